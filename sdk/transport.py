"""HTTP with cin: JSON calls, and every failure translated once, here, into the SDK's
errors (an aiohttp exception never reaches a caller)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from sdk.errors import ApiError, ConnectionFailed


def timeout_of(seconds: float | None, *, streaming: bool = False) -> aiohttp.ClientTimeout:
    """A whole request bounded by `seconds`; a streaming download only between reads,
    so a large file is not cut off for being large."""
    if streaming:
        return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
    return aiohttp.ClientTimeout(total=seconds)


async def raise_for_error(response: aiohttp.ClientResponse) -> None:
    """An ApiError for an error answer, with cin's `code` and message when it sent its
    JSON error body, else the status and the start of whatever it sent."""
    if response.status < 400:
        return
    text = await response.text(errors="replace")
    code, message = f"http_{response.status}", text[:300] or (response.reason or "")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        code = body["code"]
        message = str(body.get("error") or message)
    raise ApiError(response.status, code, message, method=response.method,
                   url=str(response.url.with_query(None)))


def translate(error: BaseException, url: str) -> ConnectionFailed:
    """An aiohttp or timeout exception as the SDK's ConnectionFailed."""
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return ConnectionFailed("the request timed out", url=url, timeout=True)
    if isinstance(error, aiohttp.ClientConnectorError):
        return ConnectionFailed(f"could not connect: {error.os_error}", url=url, connect=True)
    return ConnectionFailed(f"the connection failed: {error!r}", url=url)


class Transport:
    """One aiohttp session, and the calls made with it."""

    def __init__(self, session: aiohttp.ClientSession, request_timeout: float) -> None:
        self.session = session
        self.request_timeout = request_timeout

    async def json(self, method: str, url: str, *, body: Mapping[str, Any] | None = None,
                   params: Mapping[str, str] | None = None,
                   time_limit: float | None = None) -> dict[str, Any]:
        """A call that answers a JSON object, within `time_limit` seconds (default:
        the request timeout)."""
        try:
            async with self.session.request(
                    method, url, json=body, params=params,
                    timeout=timeout_of(time_limit or self.request_timeout)) as response:
                await raise_for_error(response)
                value = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            if isinstance(error, aiohttp.ContentTypeError | json.JSONDecodeError):
                raise ApiError(0, "bad_reply", "the answer is not JSON", method=method,
                               url=url) from error
            raise translate(error, url) from error
        except ValueError as error:  # a body that is not JSON
            raise ApiError(0, "bad_reply", "the answer is not JSON", method=method,
                           url=url) from error
        if not isinstance(value, dict):
            raise ApiError(0, "bad_reply", "the answer is not a JSON object", method=method,
                           url=url)
        return value

    async def put(self, url: str, body: AsyncIterable[bytes], size: int,
                  headers: Mapping[str, str]) -> CIMultiDictProxy[str]:
        """PUT `size` bytes from `body` (with a Content-Length, never chunked); the
        answer's headers."""
        try:
            async with self.session.put(
                    url, data=body, headers={**headers, "Content-Length": str(size)},
                    timeout=timeout_of(self.request_timeout)) as response:
                await raise_for_error(response)
                await response.read()
                return response.headers
        except (aiohttp.ClientError, TimeoutError) as error:
            raise translate(error, url) from error

    @asynccontextmanager
    async def stream(self, url: str, *, params: Mapping[str, str] | None = None
                     ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose body the caller reads as it comes (a download)."""
        try:
            async with self.session.get(url, params=params, timeout=timeout_of(
                    self.request_timeout, streaming=True)) as response:
                await raise_for_error(response)
                yield response
        except (aiohttp.ClientError, TimeoutError) as error:
            raise translate(error, url) from error
