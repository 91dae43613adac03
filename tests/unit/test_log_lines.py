"""The lines `cin` writes: text or JSON, each naming the request that caused it, also
from work a request left running in the background."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from cin import logs
from common.config import LogFormat
from common.web.log_context import REQUEST_ID_VAR
from edge.jobs import Jobs


@pytest.fixture
def written() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """A logger writing through cin's text and JSON handlers at once."""
    streams = io.StringIO(), io.StringIO()
    formats: tuple[LogFormat, LogFormat] = ("text", "json")
    logger = logging.getLogger("cin.test.lines")
    handlers = [logs.handler(stream, fmt) for stream, fmt in zip(streams, formats, strict=True)]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield streams
    finally:
        for handler in handlers:
            logger.removeHandler(handler)


def test_a_line_names_its_request_or_none(written: tuple[io.StringIO, io.StringIO]) -> None:
    text, as_json = written
    log = logging.getLogger("cin.test.lines")
    log.info("between requests")
    token = REQUEST_ID_VAR.set("abc123")
    try:
        log.warning("stored %d bytes", 5)
    finally:
        REQUEST_ID_VAR.reset(token)
    log.info("access line", extra={"request_id": "given"})

    lines = text.getvalue().splitlines()
    assert lines[0].endswith(" INFO cin.test.lines [-] between requests")
    assert lines[1].endswith(" WARNING cin.test.lines [abc123] stored 5 bytes")
    assert lines[2].endswith(" INFO cin.test.lines [given] access line")
    objects = [json.loads(line) for line in as_json.getvalue().splitlines()]
    assert [(o["level"], o["logger"], o["message"], o["request_id"]) for o in objects] == [
        ("INFO", "cin.test.lines", "between requests", None),
        ("WARNING", "cin.test.lines", "stored 5 bytes", "abc123"),
        ("INFO", "cin.test.lines", "access line", "given"),
    ]
    assert all(o["time"].endswith("+00:00") for o in objects)
    assert all("request_tag" not in o for o in objects)


def test_a_json_line_holds_its_traceback(written: tuple[io.StringIO, io.StringIO]) -> None:
    try:
        raise ValueError("bad part")
    except ValueError:
        logging.getLogger("cin.test.lines").exception("transfer failed")
    [line] = written[1].getvalue().splitlines()  # one line, however long the traceback
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR" and "ValueError: bad part" in parsed["exc_info"]


async def test_a_shielded_job_keeps_the_id_after_its_request_is_gone(
        written: tuple[io.StringIO, io.StringIO]) -> None:
    jobs, release = Jobs(), asyncio.Event()

    async def finish_the_store() -> None:
        await release.wait()
        logging.getLogger("cin.test.lines").info("stored")

    async def request() -> None:
        token = REQUEST_ID_VAR.set("abc123")  # as the request-id middleware does
        try:
            await jobs.shield(finish_the_store())
        finally:
            REQUEST_ID_VAR.reset(token)

    client = asyncio.create_task(request())
    await asyncio.sleep(0)  # the job is under way
    client.cancel()  # the client hangs up
    with pytest.raises(asyncio.CancelledError):
        await client
    release.set()
    await jobs.drain()
    assert json.loads(written[1].getvalue())["request_id"] == "abc123"
