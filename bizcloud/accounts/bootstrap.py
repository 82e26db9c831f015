"""The first admin: `make up` creates one with a generated password, kept only in the state directory.

No fixed default credential exists anywhere: on a database without users, ``ensure_admin``
creates ``admin`` with a random password and an API token for the CLI, and writes both to files
of mode 0600 in the state directory (``admin-credentials``, ``cli-token``). Later runs find the
users and change nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from bizcloud.accounts import credentials
from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine, migrate_engine

ADMIN = "admin"
CREDENTIALS_FILE = "admin-credentials"
TOKEN_FILE = "cli-token"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_admin(database_url: str, state_dir: Path) -> str | None:
    """Create the first admin if there are no users; returns the new password, or None if users exist."""
    engine = make_engine(database_url)
    try:
        migrate_engine(engine)
        accounts = AccountStore(engine)
        if accounts.count_users():
            return None
        password = credentials.new_password()
        accounts.create_user(name=ADMIN, password=password, role=Role.ADMIN)
        token = accounts.issue_token(user=ADMIN, name="cli")
    finally:
        engine.dispose()
    _write_private(state_dir / CREDENTIALS_FILE, f"user: {ADMIN}\npassword: {password}\n")
    _write_private(state_dir / TOKEN_FILE, token + "\n")
    return password


def cli_token(state_dir: Path) -> str | None:
    """The CLI's token: $BIZCLOUD_TOKEN, else the one `make up` saved in the state directory."""
    if token := os.environ.get("BIZCLOUD_TOKEN"):
        return token.strip()
    path = state_dir / TOKEN_FILE
    return path.read_text().strip() if path.is_file() else None
