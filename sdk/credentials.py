"""What the SDK shows cin to be let in: a policy and its signature someone signed for
it, or the app secret, with which it signs a short policy for each call itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from common.protocol.security import encode_policy, sign_policy

POLICY_LIFETIME = 3600  # seconds: as long as the Filestack SDKs' default


@dataclass(frozen=True)
class Credentials:
    """Either `policy` and `signature`, or `secret` (the app secret), or nothing (an
    app with optional security). The secret never leaves this process: only policies
    signed with it do."""

    policy: str | None = None
    signature: str | None = None
    secret: str | None = None

    def __post_init__(self) -> None:
        if (self.policy is None) != (self.signature is None):
            raise ValueError("a policy needs its signature, and a signature its policy")
        if self.secret is not None and self.policy is not None:
            raise ValueError("give a policy and signature, or an app secret, not both")
        if self.secret == "":
            raise ValueError("the app secret is empty")

    def fields(self, *calls: str, handle: str | None = None,
               now: float | None = None) -> dict[str, str]:
        """`policy` and `signature` for a request that makes one of `calls` (about
        `handle`), or nothing when there are no credentials."""
        if self.policy is not None and self.signature is not None:
            return {"policy": self.policy, "signature": self.signature}
        if self.secret is None:
            return {}
        expiry = int(time.time() if now is None else now) + POLICY_LIFETIME
        policy: dict[str, Any] = {"expiry": expiry, "call": list(calls)}
        if handle is not None:
            policy["handle"] = handle
        text = encode_policy(policy)
        return {"policy": text, "signature": sign_policy(self.secret, text)}
