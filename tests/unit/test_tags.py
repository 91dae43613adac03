import json
from typing import Any

import pytest

from common.protocol.errors import CinError, Code
from common.protocol.tags import MAX_JSON_TEXT, tags_from_json_text, validate_tags


def refused(value: object) -> str:
    with pytest.raises(CinError) as caught:
        validate_tags(value)
    assert caught.value.code is Code.BAD_TAGS
    return caught.value.detail or ""


def refused_text(text: str) -> str:
    with pytest.raises(CinError) as caught:
        tags_from_json_text(text)
    assert caught.value.code is Code.BAD_TAGS
    return caught.value.detail or ""


def test_none_is_no_tags() -> None:
    assert validate_tags(None) == {}


def test_ten_tags_are_allowed_eleven_are_not() -> None:
    ten = {f"k{i}": f"v{i}" for i in range(10)}
    assert validate_tags(ten) == ten
    assert refused({**ten, "k10": "v"}) == "at most 10 tags (got 11)"


def test_result_is_a_copy() -> None:
    tags = {"a": "b"}
    result = validate_tags(tags)
    result["c"] = "d"
    assert tags == {"a": "b"}


def test_key_length_counts_characters() -> None:
    assert validate_tags({"k" * 128: "v"}) == {"k" * 128: "v"}
    assert validate_tags({"é" * 128: "v"}) == {"é" * 128: "v"}  # 256 bytes of UTF-8
    assert "is over 128 characters" in refused({"k" * 129: "v"})
    assert "is over 128 characters" in refused({"é" * 129: "v"})


def test_value_length_counts_characters() -> None:
    assert validate_tags({"k": "v" * 256}) == {"k": "v" * 256}
    assert validate_tags({"k": "😀" * 256}) == {"k": "😀" * 256}  # 1024 bytes of UTF-8
    assert refused({"k": "v" * 257}) == "value of 'k' is over 256 characters"
    assert refused({"k": "😀" * 257}) == "value of 'k' is over 256 characters"


def test_empty_value_is_allowed_empty_key_is_not() -> None:
    assert validate_tags({"k": ""}) == {"k": ""}
    assert refused({"": "v"}) == "a key must not be empty"


@pytest.mark.parametrize("value", [1, None, True, ["a"], {"a": "b"}, 1.5])
def test_values_must_be_strings(value: Any) -> None:
    assert refused({"k": value}) == "value of 'k' must be a string"


def test_keys_must_be_strings() -> None:
    assert refused({1: "v"}) == "key 1 must be a string"


@pytest.mark.parametrize("value", [[], ["a", "b"], "text", 5, True, [["k", "v"]]])
def test_tags_must_be_an_object(value: object) -> None:
    assert refused(value).startswith("tags must be a JSON object")


def test_lone_surrogate_is_refused() -> None:
    assert "not valid Unicode" in refused({"k": "\ud800"})
    assert "not valid Unicode" in refused_text('{"k": "\\udc00"}')


def test_json_text() -> None:
    assert tags_from_json_text('{"a": "1", "A": "2"}') == {"a": "1", "A": "2"}  # case-sensitive
    assert tags_from_json_text('{"k": "\\ud83d\\ude00"}') == {"k": "😀"}
    assert tags_from_json_text("null") == {}


def test_duplicate_keys_in_json_text() -> None:
    assert refused_text('{"a": "1", "b": "2", "a": "3"}') == "key 'a' appears twice"


@pytest.mark.parametrize(("text", "words"), [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ('["a"]', "tags must be a JSON object"),
    ('{"k": 1}', "value of 'k' must be a string"),
    ('{"k": NaN}', "value of 'k' must be a string"),
    ("[" * 100_000, "over 65536 characters"),
    ("[" * 20_000 + "]" * 20_000, "not valid JSON"),
])
def test_bad_json_text(text: str, words: str) -> None:
    assert words in refused_text(text)


def test_json_text_bound_admits_ten_fully_escaped_tags() -> None:
    tags = {f"{i}" + "😀" * 127: "😀" * 256 for i in range(10)}
    text = json.dumps(tags)  # ensure_ascii: every emoji is a 12-byte surrogate pair escape
    assert len(text) <= MAX_JSON_TEXT
    assert tags_from_json_text(text) == tags
    assert "over 65536" in refused_text(" " * (MAX_JSON_TEXT - len(text) + 1) + text)
