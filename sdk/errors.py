"""What the SDK raises. Every error a caller can meet is one of these, so `except
CinClientError` catches them all; cin's own refusals carry its JSON `code` and message.
"""

from __future__ import annotations


class CinClientError(Exception):
    """Anything the SDK could not do."""


class ApiError(CinClientError):
    """cin answered with an error: its HTTP status, its `code` (common/protocol/errors.py's table,
    e.g. `policy_denies`) and its message."""

    def __init__(self, status: int, code: str, message: str, *, method: str = "",
                 url: str = "") -> None:
        where = f" ({method} {url})" if method else ""
        super().__init__(f"{message} [{code}, HTTP {status}]{where}")
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = url

    @property
    def retryable(self) -> bool:
        """A server-side trouble that may pass (a 5xx, a 408 or a 429); a 4xx refusal
        stays a refusal however often it is asked."""
        return self.status >= 500 or self.status in (408, 429)


class ConnectionFailed(CinClientError):
    """A request got no answer: the connection was refused or dropped, or timed out."""

    def __init__(self, message: str, *, url: str = "", connect: bool = False,
                 timeout: bool = False) -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url
        self.connect = connect  # nothing listens there: the POP is down, not slow
        self.timeout = timeout


class NoPopAvailable(CinClientError):
    """No POP answered: none is listed, or none could be reached."""


class UploadInterrupted(CinClientError):
    """The upload stopped before it completed, and can be resumed: every POP tried
    failed (the network is down, or they are), or it was cancelled. Its state is kept in
    `state_path` (when the client keeps state): the same upload call continues it."""

    def __init__(self, message: str, *, upload_id: str | None = None,
                 state_path: str | None = None) -> None:
        super().__init__(message)
        self.upload_id = upload_id
        self.state_path = state_path


class UploadFailed(CinClientError):
    """The file ended Failed at cin (it expired before it was completed)."""
