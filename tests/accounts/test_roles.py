"""The one authorization decision, as a table: role x action x ownership x environment."""

from __future__ import annotations

import pytest

from bizcloud.accounts.roles import Action, Role, decide, owners_of

A, D, OPS, V = Role.ADMIN, Role.DEVELOPER, Role.OPS, Role.VIEWER
OWNED = frozenset({"alice"})
NOBODY: frozenset[str] = frozenset()


@pytest.mark.parametrize(("role", "action", "owners", "env", "allowed"), [
    # viewer: nothing that changes anything
    (V, Action.SHELL, OWNED, "dev", False),
    (V, Action.DEPLOY, OWNED, "dev", False),
    (V, Action.CREATE_SERVICE, NOBODY, None, False),
    # developer: own services, non-production only
    (D, Action.SHELL, OWNED, "dev", True),
    (D, Action.DEPLOY, OWNED, "dev", True),
    (D, Action.SCALE, OWNED, "test", True),
    (D, Action.SHELL, OWNED, "prod", False),
    (D, Action.DEPLOY, OWNED, "production", False),
    (D, Action.SHELL, OWNED, None, False),          # unknown environment counts as production
    (D, Action.SHELL, NOBODY, "dev", False),        # not the owner
    (D, Action.EDIT_SERVICE, OWNED, None, True),
    (D, Action.EDIT_SERVICE, NOBODY, None, False),
    (D, Action.CREATE_SERVICE, NOBODY, None, True),
    (D, Action.MANAGE_PLATFORM, OWNED, "dev", False),
    (D, Action.TEST_ENVIRONMENT, NOBODY, "qa-42", True),    # QA's one-click environment
    (D, Action.TEST_ENVIRONMENT, NOBODY, "prod", False),
    (D, Action.TEST_ENVIRONMENT, NOBODY, None, False),
    (V, Action.TEST_ENVIRONMENT, NOBODY, "qa-42", False),
    (D, Action.MANAGE_USERS, OWNED, None, False),
    # ops: everything but users
    (OPS, Action.SHELL, NOBODY, "prod", True),
    (OPS, Action.MANAGE_PLATFORM, NOBODY, None, True),
    (OPS, Action.MANAGE_USERS, NOBODY, None, False),
    # admin: everything
    (A, Action.MANAGE_USERS, NOBODY, None, True),
    (A, Action.SHELL, NOBODY, "prod", True),
])
def test_decide(role: Role, action: Action, owners: frozenset[str], env: str | None, allowed: bool) -> None:
    decision = decide(user="alice", role=role, action=action, service="demo-web", env=env, owners=owners)
    assert decision.allowed is allowed
    assert decision.reason


def test_production_environments_are_configurable() -> None:
    decision = decide(user="alice", role=D, action=Action.SHELL, service="demo-web", env="live",
                      owners=OWNED, production_envs=frozenset({"live"}))
    assert not decision.allowed and "production" in decision.reason


@pytest.mark.parametrize(("field", "owners"), [
    ("", set()), ("alice", {"alice"}), ("alice, bob", {"alice", "bob"}),
    ("alice bob;carol", {"alice", "bob", "carol"}),
])
def test_owners_of(field: str, owners: set[str]) -> None:
    assert owners_of(field) == owners
