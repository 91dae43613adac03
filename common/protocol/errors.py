"""The one table of errors cin answers with.

Every failure a client can cause or meet is declared here once, as a code, an HTTP status
and a message. Handlers raise `CinError(Code.X, detail)`; the HTTP middleware turns it into
`{"error": "...", "code": "..."}` with the status from this table, and the edge↔coordinator
codec carries the code across processes so a POP answers the same error the coordinator
decided.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str


class Code(Enum):
    """Error codes, stable on the wire: clients may match on them."""

    # Requests that are malformed.
    BAD_PARAMETER = ErrorSpec(400, "a request parameter is invalid")
    MALFORMED_HTTP = ErrorSpec(400, "the request is not well-formed HTTP/1.1")
    MISSING_APIKEY = ErrorSpec(400, "the request names no apikey (query parameter 'key')")
    BAD_BASE64 = ErrorSpec(400, "the body is not valid base64")
    INCOMPLETE_BODY = ErrorSpec(400, "the body is not as long as its Content-Length")
    BODY_TIMEOUT = ErrorSpec(408, "the request body stopped arriving")
    STORE_TIMEOUT = ErrorSpec(408, "the store took longer than a store may "
                                   "(upload_expiry.store_ttl)")
    BAD_PATH = ErrorSpec(400, "the storage path is not allowed")
    UNKNOWN_PROVIDER = ErrorSpec(400, "this storage provider is not configured for the app")
    MALFORMED_MULTIPART = ErrorSpec(400, "the multipart form body is malformed")
    MISSING_FILE = ErrorSpec(400, "the request carries no file")
    EMPTY_FILE = ErrorSpec(400, "the file is empty")
    BAD_URL = ErrorSpec(400, "the source URL is invalid")
    URL_UNREACHABLE = ErrorSpec(400, "the source URL could not be fetched")
    BAD_MESSAGE = ErrorSpec(400, "the internal message is malformed")
    BAD_TAGS = ErrorSpec(400, "the upload tags break a rule")
    BAD_CONTENT_ENCODING = ErrorSpec(400, "the body is not a whole stream of its "
                                          "Content-Encoding")
    BAD_CHECKSUM_ALGORITHM = ErrorSpec(400, "tus: Upload-Checksum names an algorithm cin "
                                            "does not offer (Tus-Checksum-Algorithm)")
    # Who may do what.
    NOT_AUTHENTICATED = ErrorSpec(401, "this route needs the internal secret as a bearer "
                                       "token")
    UNKNOWN_APIKEY = ErrorSpec(403, "the apikey is not known")
    URL_FORBIDDEN = ErrorSpec(403, "the source URL points at a forbidden address")
    CONTAINER_NOT_ALLOWED = ErrorSpec(403, "the container is not allowed for this storage")
    SECURITY_REQUIRED = ErrorSpec(403, "this call needs a policy and signature")
    BAD_POLICY = ErrorSpec(403, "the policy is not valid")
    BAD_SIGNATURE = ErrorSpec(403, "the signature does not match the policy")
    BAD_CREDENTIALS = ErrorSpec(403, "the basic auth credentials are wrong")
    POLICY_EXPIRED = ErrorSpec(403, "the policy has expired")
    POLICY_DENIES = ErrorSpec(403, "the policy does not allow this request")
    BAD_INTERNAL_SIGNATURE = ErrorSpec(403, "the internal message signature is invalid")
    ORIGIN_NOT_ALLOWED = ErrorSpec(403, "this web origin is not allowed to call cin "
                                        "(the config's cors.origins)")
    # What does not exist.
    NOT_FOUND = ErrorSpec(404, "no such route")
    FILE_NOT_FOUND = ErrorSpec(404, "no file has this handle")
    METHOD_NOT_ALLOWED = ErrorSpec(405, "this method is not allowed on this route")
    FILE_GONE = ErrorSpec(410, "the file's bytes are no longer stored")
    UPLOAD_GONE = ErrorSpec(410, "tus: the upload was terminated, or it expired")
    FINAL_UPLOAD = ErrorSpec(403, "tus: a final upload takes no PATCH; its bytes are its "
                                  "partial uploads'")
    TUS_VERSION = ErrorSpec(412, "tus: Tus-Resumable names a version cin does not speak "
                                 "(1.0.0)")
    CONFLICT = ErrorSpec(409, "the file is not in a state that allows this")
    # Limits.
    TOO_LARGE = ErrorSpec(413, "the file is larger than the app allows")
    URL_TOO_LARGE = ErrorSpec(413, "the file at the source URL is larger than allowed")
    UNSUPPORTED_CONTENT_ENCODING = ErrorSpec(415, "cin does not decode this Content-Encoding "
                                                  "here")
    RANGE_NOT_SATISFIABLE = ErrorSpec(416, "the requested range is not satisfiable")
    NOT_OFFSET_STREAM = ErrorSpec(415, "tus: a PATCH body is application/offset+octet-stream")
    TOO_MANY_SIGN_INS = ErrorSpec(429, "too many wrong sign-ins from this address; try "
                                        "again after Retry-After seconds")
    CHECKSUM_MISMATCH = ErrorSpec(460, "tus: the body does not match Upload-Checksum; "
                                       "none of it was kept")
    # Backends that are down: not the client's fault, but not a bug of ours either.
    STORAGE_UNAVAILABLE = ErrorSpec(503, "the storage backend is unavailable")
    COORDINATOR_UNAVAILABLE = ErrorSpec(503, "the coordinator is unavailable")
    POP_UNAVAILABLE = ErrorSpec(503, "no POP could take the bytes; retry")
    IN_TRANSIT_UNAVAILABLE = ErrorSpec(503, "the file is in transit and the POP holding it "
                                            "cannot serve it now; retry")
    FILE_AT_POP = ErrorSpec(503, "the file is at a POP that has not reported it here yet, "
                                 "and cannot be reached; retry")
    NO_HANDLES = ErrorSpec(503, "this POP has no file handles left and cannot reach the "
                                "coordinator for more; retry, or use another POP")
    SHUTTING_DOWN = ErrorSpec(503, "this node is shutting down; retry, or use another POP")
    TOO_MANY_CONNECTIONS = ErrorSpec(503, "this node holds as many connections as it takes; "
                                          "retry, or use another POP")
    INSUFFICIENT_STORAGE = ErrorSpec(507, "this node's disk is full; retry later, or use "
                                          "another POP")
    # Never heard by anyone: the client hung up before its answer. nginx's status for it,
    # so that the access log tells such requests apart.
    CLIENT_CLOSED = ErrorSpec(499, "the client closed the connection before the answer")
    # A bug. The middleware logs it; the client sees no details.
    INTERNAL = ErrorSpec(500, "internal error")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def message(self) -> str:
        return self.value.message

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def from_wire(cls, text: str) -> Code:
        try:
            return cls[text.upper()]
        except KeyError:
            return cls.INTERNAL


# What the OS answers a write to a full disk (ENOSPC) or to a user past its quota
# (EDQUOT): both are INSUFFICIENT_STORAGE, never a 500.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class CinError(Exception):
    """A failure with a code from the table and, optionally, what exactly was wrong."""

    def __init__(self, code: Code, detail: str | None = None) -> None:
        super().__init__(detail or code.message)
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return self.code.status

    def to_json(self) -> dict[str, str]:
        text = self.code.message if not self.detail else f"{self.code.message}: {self.detail}"
        return {"error": text, "code": self.code.wire}


class FileAtPop(CinError):
    """FILE_AT_POP: `handle` is at POP `pop`, which leased it and has not reported it to
    the coordinator yet. The detail names the POP, so the error still says where the file
    is once carried to another node (`from_error`), which can then send a client there."""

    _AT = " is at POP "

    def __init__(self, handle: str, pop: str) -> None:
        super().__init__(Code.FILE_AT_POP, f"{handle}{self._AT}{pop}")
        self.handle = handle
        self.pop = pop

    @classmethod
    def from_error(cls, error: CinError) -> FileAtPop | None:
        """The FileAtPop an error carried over the wire stands for, if it is one."""
        if error.code is not Code.FILE_AT_POP or not error.detail:
            return None
        handle, at, pop = error.detail.partition(cls._AT)
        return cls(handle, pop) if at and handle and pop else None
