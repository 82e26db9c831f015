"""The user-ID split shared by every layer: the gateway (in Lua), the SOA SDK and the gray controller.

One stable hash with no per-service salt, so a user who is gray in one service is gray in every
service of a call chain at the same ratio. The Lua twin lives in the gateway; both are checked
against ``tests/vectors/user_buckets.json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

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
