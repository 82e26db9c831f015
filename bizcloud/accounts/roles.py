"""Who may do what: roles, actions and the one decision function every check goes through.

Purely computational, no side effects: the web layer asks ``decide`` before a mutation or a shell
and records the answer in the audit trail; the release side (deploy, scale) asks the same function.

- viewer: reads only.
- developer: deploy, scale and shell in non-production environments, on services they own
  (a service's ``owner`` field lists user names); may create services and edit the ones they own;
  may create and delete one-click test environments (any name but a production one): QA gets a
  whole environment without waiting for ops.
- ops: everything in every environment.
- admin: everything ops may, plus users and tokens of others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    OPS = "ops"
    ADMIN = "admin"


class Action(StrEnum):
    SHELL = "shell"
    DEPLOY = "deploy"
    SCALE = "scale"
    CREATE_SERVICE = "create-service"
    EDIT_SERVICE = "edit-service"        # update or delete one service
    TEST_ENVIRONMENT = "test-environment"  # `env create|delete`: a one-click environment
    MANAGE_PLATFORM = "manage-platform"  # routes, the inventory, anything not owned by one service
    MANAGE_USERS = "manage-users"


DEVELOPER_ACTIONS = frozenset({Action.SHELL, Action.DEPLOY, Action.SCALE})
DEFAULT_PRODUCTION_ENVS = frozenset({"prod", "production"})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def owners_of(owner_field: str) -> frozenset[str]:
    """User names in a service's ``owner`` field ("alice, bob" or "alice bob"). Purely computational."""
    return frozenset(part for part in re.split(r"[\s,;]+", owner_field) if part)


def decide(*, user: str, role: Role, action: Action, service: str | None = None, env: str | None = None,
           owners: frozenset[str] = frozenset(),
           production_envs: frozenset[str] = DEFAULT_PRODUCTION_ENVS) -> Decision:
    """Whether ``user`` with ``role`` may do ``action`` on ``service`` in ``env``, and why.

    An unknown environment (``env`` None) counts as production: a developer's shell into a
    container nobody labelled is refused rather than guessed at. Purely computational.
    """
    if role is Role.ADMIN:
        return Decision(True, "admin may do everything")
    if action is Action.MANAGE_USERS:
        return Decision(False, "only an admin manages users")
    if role is Role.OPS:
        return Decision(True, "ops may do everything in every environment")
    if role is Role.VIEWER:
        return Decision(False, "a viewer may only read")
    # developer
    if action is Action.CREATE_SERVICE:
        return Decision(True, "a developer may create services")
    if action is Action.TEST_ENVIRONMENT:
        if env is None or env in production_envs:
            return Decision(False, f"a developer may not create or delete production environment {env}")
        return Decision(True, f"a developer may create and delete test environment {env}")
    if action is Action.MANAGE_PLATFORM:
        return Decision(False, "routes and the inventory are managed by ops")
    if service is None or user not in owners:
        return Decision(False, f"{user} does not own service {service or '(none)'}: ask its owner or ops")
    if action is Action.EDIT_SERVICE:
        return Decision(True, f"{user} owns {service}")
    if action in DEVELOPER_ACTIONS:
        if env is None or env in production_envs:
            where = env or "(unknown)"
            return Decision(False, f"a developer may not {action} in production environment {where}")
        return Decision(True, f"{user} owns {service}; {env} is not production")
    return Decision(False, f"a developer may not {action}")
