import pytest

from common.protocol.errors import CinError, Code
from common.protocol.naming import (
    clean_filename,
    is_handle,
    new_handle,
    object_key,
    random_text,
    validate_path,
)


def test_handles_are_20_url_safe_characters_and_distinct() -> None:
    handles = {new_handle() for _ in range(1000)}
    assert len(handles) == 1000
    assert all(is_handle(h) and len(h) == 20 for h in handles)


def test_random_text_favours_no_character() -> None:
    """100 characters do not divide 256: taking every byte modulo 100 would draw the
    first 56 half as often again as the rest."""
    alphabet = "".join(chr(0x100 + n) for n in range(100))
    text = random_text(alphabet, 200_000)
    counts = [text.count(char) for char in alphabet]

    assert len(text) == 200_000
    low, high = sum(counts[:56]) / 56, sum(counts[56:]) / 44
    assert 0.95 < low / high < 1.05


def test_a_handle_is_exactly_20_letters_and_digits() -> None:
    assert is_handle("A" * 20)
    for text in ("A" * 20 + "\n", "A" * 19, "A" * 21, "A" * 19 + "-", "A" * 19 + "\u0661"):
        assert not is_handle(text), repr(text)


def test_key_without_path_is_random_id_underscore_filename() -> None:
    key = object_key(None, "photo.png")
    unique, name = key.split("_", 1)
    assert is_handle(unique)
    assert name == "photo.png"


def test_path_ending_in_slash_is_a_folder() -> None:
    key = object_key("/myfiles/", "photo.png")
    assert key.startswith("myfiles/")
    assert key.endswith("_photo.png")


def test_other_path_is_the_key_with_leading_slash_dropped() -> None:
    assert object_key("/myfiles/1234.png", "photo.png") == "myfiles/1234.png"


def test_root_path_is_the_root_folder() -> None:
    assert object_key("/", "a.txt").endswith("_a.txt")
    assert "/" not in object_key("/", "a.txt")


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "a/./b", "a\x00b", "x" * 1025,
                                  "in/\ud800/", "\udcff"])
def test_escaping_or_broken_paths_are_refused(path: str) -> None:
    with pytest.raises(CinError) as caught:
        validate_path(path)
    assert caught.value.code is Code.BAD_PATH


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "untitled"),
        ("", "untitled"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("..", "untitled"),
        ("bad\nname.txt", "badname.txt"),
        ("résumé.pdf", "résumé.pdf"),
        # A lone surrogate from a JSON body is replaced; one aiohttp made of an
        # undecodable header byte is decoded again with its neighbours.
        ("\ud800.txt", "\ufffd.txt"),
        ("a\udfff\ud83d.txt", "a\ufffd\ufffd.txt"),
        ("r\udcc3\udca9sum\udcff.pdf", "résum\ufffd.pdf"),
    ],
)
def test_filenames_are_cleaned(given: str | None, expected: str) -> None:
    assert clean_filename(given) == expected
