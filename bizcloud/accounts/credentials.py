"""Password hashes and bearer secrets. Purely computational apart from the randomness of new secrets.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile); a
login re-hashes when those parameters change. Tokens are 256-bit random secrets, so a plain
SHA-256 of them is enough to store (nobody can brute-force 2^256), and it lets a request find its
token by an indexed equality lookup instead of trying every hash.
"""

from __future__ import annotations

import hashlib
import secrets as _random

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "bct_"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    return TOKEN_PREFIX + _random.token_urlsafe(32)


def new_password() -> str:
    """A generated password people can type: 20 URL-safe characters (about 120 bits)."""
    return _random.token_urlsafe(15)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
