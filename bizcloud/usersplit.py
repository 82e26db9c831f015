"""The user-ID split shared by every layer: the gateway (in Lua), the SOA SDK and the gray controller.

One stable hash with no per-service salt, so a user who is gray in one service is gray in every
service of a call chain at the same ratio. The Lua twin lives in the gateway; both are checked
against ``tests/vectors/user_buckets.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

GroupName = Literal["normal", "gray"]

BUCKETS = 10_000


def bucket(uid: str) -> int:
    """``int(md5(uid).hexdigest()[:8], 16) % 10000``: the first 32 bits of the MD5 of the UTF-8 bytes."""
    return int(hashlib.md5(uid.encode("utf-8"), usedforsecurity=False).hexdigest()[:8], 16) % BUCKETS


def is_gray(uid: str | None, ratio_percent: float, whitelist: Collection[str] = ()) -> bool:
    """A user goes gray when whitelisted or when their bucket falls under ``ratio_percent`` of 10,000.

    No user ID means the normal group: an anonymous request must never land on code under trial.
    """
    if not uid:
        return False
    if uid in whitelist:
        return True
    return bucket(uid) < ratio_percent * (BUCKETS // 100)


@dataclass(frozen=True, slots=True)
class GrayPolicy:
    """A service's gray split, the same value for the gateway and the SOA SDK.

    ``fallback``: when the chosen group has no instance, use the other one (counted by the caller)
    rather than fail the request.
    """

    ratio: float = 0.0
    whitelist: frozenset[str] = field(default_factory=frozenset)
    fallback: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 100:
            raise ValueError(f"ratio: {self.ratio} is not a percentage; give a number from 0 to 100")

    def group_for(self, uid: str | None) -> GroupName:
        return "gray" if is_gray(uid, self.ratio, self.whitelist) else "normal"

    def to_json(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "whitelist": sorted(self.whitelist), "fallback": self.fallback}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GrayPolicy:
        return cls(ratio=float(data.get("ratio", 0.0)),
                   whitelist=frozenset(map(str, data.get("whitelist", ()))),
                   fallback=bool(data.get("fallback", True)))
