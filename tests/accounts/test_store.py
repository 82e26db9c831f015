"""Accounts on a real, migrated SQLite catalog database: users, logins, tokens, audit, and the schema."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from bizcloud.accounts.errors import BadCredentials, InvalidInput, LastAdmin, UserExists, UserNotFound
from bizcloud.accounts.models import Base
from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine, migrate


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    migrate(url)
    return make_engine(url)


@pytest.fixture
def accounts(engine: Engine) -> AccountStore:
    return AccountStore(engine)


def test_revision_0003_creates_exactly_the_accounts_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        ours = {"users", "tokens", "audit"}
        diff = [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and d[1].name not in ours)
                and not (d[0] == "remove_index" and d[1].table.name not in ours)]
        assert diff == []
        assert int(context.get_current_revision() or 0) >= 3  # 0003 and whatever came after it


def test_passwords_are_hashed_and_checked(accounts: AccountStore, engine: Engine) -> None:
    accounts.create_user(name="alice", password="correct horse", role=Role.DEVELOPER)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users WHERE name='alice'").scalar()
    assert isinstance(stored, str) and stored.startswith("$argon2id$") and "correct horse" not in stored
    user, session = accounts.login(name="alice", password="correct horse")
    assert user.role is Role.DEVELOPER
    assert accounts.authenticate(token=session).name == "alice"
    with pytest.raises(BadCredentials):
        accounts.login(name="alice", password="wrong horse")
    with pytest.raises(BadCredentials):
        accounts.login(name="nobody", password="correct horse")


def test_tokens_authenticate_until_revoked_expired_or_disabled(accounts: AccountStore) -> None:
    accounts.create_user(name="bob", password="12345678", role=Role.OPS)
    token = accounts.issue_token(user="bob", name="ci")
    assert token.startswith("bct_")
    assert accounts.authenticate(token=token).role is Role.OPS
    assert [t.name for t in accounts.list_tokens(user="bob")] == ["ci"]
    accounts.revoke(token=token)
    with pytest.raises(BadCredentials):
        accounts.authenticate(token=token)
    expired = accounts.issue_token(user="bob", ttl=timedelta(seconds=-1))
    with pytest.raises(BadCredentials, match="expired"):
        accounts.authenticate(token=expired)
    live = accounts.issue_token(user="bob")
    accounts.update_user(name="bob", disabled=True)
    with pytest.raises(BadCredentials):
        accounts.authenticate(token=live)
    with pytest.raises(BadCredentials):
        accounts.login(name="bob", password="12345678")


@pytest.mark.parametrize(("name", "password", "error"), [
    ("Alice", "12345678", InvalidInput),
    ("a b", "12345678", InvalidInput),
    ("", "12345678", InvalidInput),
    ("carol", "short", InvalidInput),
])
def test_bad_names_and_passwords_are_refused_naming_the_field(accounts: AccountStore, name: str,
                                                             password: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        accounts.create_user(name=name, password=password, role=Role.VIEWER)
    assert "name" in str(caught.value) or "password" in str(caught.value)


def test_duplicates_and_unknown_users(accounts: AccountStore) -> None:
    accounts.create_user(name="dave", password="12345678", role=Role.VIEWER)
    with pytest.raises(UserExists):
        accounts.create_user(name="dave", password="12345678", role=Role.VIEWER)
    with pytest.raises(UserNotFound):
        accounts.issue_token(user="erin")
    assert accounts.update_user(name="dave", role=Role.ADMIN).role is Role.ADMIN


def test_audit_records_start_finish_and_list_newest_first(accounts: AccountStore) -> None:
    first = accounts.audit_start(user="alice", action="shell", target="kube:bc-dev/demo-web-1/app",
                                 recording="1.cast")
    second = accounts.audit_start(user="bob", action="POST /api/v1/services", target="/api/v1/services")
    accounts.audit_finish(record_id=first, status=0, detail={"exit": "closed"})
    listed = accounts.audit()
    assert [a.id for a in listed] == [second, first]
    done = accounts.audit_record(record_id=first)
    assert done is not None and done.ended_at is not None and done.status == 0
    assert done.detail == {"exit": "closed"} and done.recording == "1.cast"
    assert [a.id for a in accounts.audit(user="bob")] == [second]


# --- the last admin ----------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    pytest.param({"role": Role.OPS}, id="demote"),
    pytest.param({"disabled": True}, id="disable"),
    pytest.param("delete", id="delete"),
])
def test_the_last_enabled_admin_cannot_be_removed(accounts: AccountStore, change: object) -> None:
    accounts.create_user(name="root", password="12345678", role=Role.ADMIN)
    accounts.create_user(name="gone", password="12345678", role=Role.ADMIN)
    accounts.update_user(name="gone", disabled=True)  # a disabled admin manages nobody: it does not count

    def apply() -> None:
        if change == "delete":
            accounts.delete_user(name="root")
        else:
            assert isinstance(change, dict)
            accounts.update_user(name="root", **change)

    with pytest.raises(LastAdmin, match="'root' is the last enabled admin") as refused:
        apply()
    assert "make another user admin first" in refused.value.one_line()
    assert accounts.get_user(name="root").role is Role.ADMIN and not accounts.get_user(name="root").disabled
    accounts.update_user(name="gone", disabled=False)  # a second enabled admin: now it may go
    apply()
    with pytest.raises(LastAdmin):
        accounts.update_user(name="gone", role=Role.VIEWER)


def test_changes_that_keep_an_admin_are_allowed(accounts: AccountStore) -> None:
    accounts.create_user(name="root", password="12345678", role=Role.ADMIN)
    accounts.create_user(name="carol", password="12345678", role=Role.OPS)
    assert accounts.update_user(name="root", role=Role.ADMIN, password="another-pass").role is Role.ADMIN
    assert accounts.update_user(name="root", disabled=False).disabled is False
    token = accounts.issue_token(user="carol")
    accounts.delete_user(name="carol")
    with pytest.raises(BadCredentials):
        accounts.authenticate(token=token)
    with pytest.raises(UserNotFound):
        accounts.delete_user(name="carol")
    assert [u.name for u in accounts.list_users()] == ["root"]
