"""The REST API fuzzed from its own OpenAPI description: whatever a client sends, no 5xx.

Schemathesis reads ``/openapi.json`` from the real app (in-process over ASGI, its lifespan running
on a temporary SQLite catalog) and sends schema-valid and schema-breaking requests to every
operation: as an ops user and as an admin (Bearer tokens, as the CLI sends), and as nobody. A 5xx, or an
exception escaping the app, fails the test with the request that caused it. Anonymous callers must
be refused (401) on every write and on the reads that are not public, before anything is parsed.

The run is bounded and deterministic: a fixed number of examples per operation, derandomized,
and the change stream's long-poll ``wait`` clamped so a generated "wait 60 s" costs 50 ms.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine, migrate
from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.schemas import ANY_HOST
from bizcloud.catalog.store import CatalogStore
from bizcloud.settings import Settings
from bizcloud.web.app import create_app
from bizcloud.web.auth import MUTATING, OPEN_MUTATIONS

# Per operation and caller: 26 operations x 3 callers in about 40 s on 2 cores. Raise it for a
# deeper local run (BIZCLOUD_FUZZ_EXAMPLES=500); the cases stay derandomized either way.
MAX_EXAMPLES = int(os.environ.get("BIZCLOUD_FUZZ_EXAMPLES", "20"))
MAX_WAIT_S = 0.05  # the long-poll's wait, clamped
# Reads that need a user; every other GET is public (the gateway and the SOA tools read without one).
SEEDED_NAMES = ("0", "a")
FUZZ_ROLES = (Role.OPS, Role.ADMIN)
PRIVATE_READS = frozenset({"/api/v1/auth/whoami", "/api/v1/users", "/api/v1/audit",
                           "/api/v1/audit/{record_id}/recording"})


# The schema is read from an app that is never started (creating one does no I/O); the requests go
# to the fixture's app, whose lifespan (migrations, stores, change stream) schemathesis runs.
schema = schemathesis.openapi.from_dict(create_app(database_url="sqlite://").openapi())


@dataclass(frozen=True)
class Api:
    app: FastAPI
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app on a fresh, migrated catalog with an ops user and an admin, and their API tokens."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    migrate(db_url)
    engine = make_engine(db_url)
    accounts = AccountStore(engine)
    _seed(CatalogStore(engine))
    tokens = {}
    for role in FUZZ_ROLES:
        accounts.create_user(name=f"fuzz-{role}", password=f"{role}-password", role=role)
        tokens[role] = accounts.issue_token(user=f"fuzz-{role}")
    engine.dispose()
    # No kubeconfig: shells (WebSockets, not fuzzed) would answer 503; nothing reaches a cluster.
    app = create_app(database_url=db_url, poll_interval=0.01,
                     settings=Settings(state_dir=tmp, kubeconfig=tmp / "none"))
    yield Api(app=app, tokens=tokens)
    shutdown_lifespans()  # closes the app's engine and change-stream watch before its files go


def _seed(catalog: CatalogStore) -> None:
    """Entities under the names the generator tries first ("0"), so cases get past "not found"."""
    for name in SEEDED_NAMES:
        catalog.create_service(name=name, owner="fuzz-ops")
        catalog.create_environment(name=name)
        catalog.create_route(host=ANY_HOST, path_prefix=f"/{name}", service=name, env=name)
        catalog.set_gray(policy=GrayPolicyOut(service=name, ratio=10.0, whitelist=("u1",)))


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Case[Any]) -> bool | None:
    """``not_a_server_error``, except the one 5xx this app is meant to give: this fuzzed server has
    no cluster (no kubeconfig), so release operations answer 503 "no cluster" — checked by its
    message, any other 5xx still fails. The release routes run against the real cluster in
    tests/e2e/test_release.py and test_gray.py."""
    return None if _no_cluster(response, case) else not_a_server_error(ctx, response, case)


def _no_cluster(response: Any, case: Case[Any]) -> bool:
    return bool(response.status_code == 503 and case.path.startswith("/api/v1/release")
                and "cluster" in response.text)


def _clamp_wait(case: Case[Any]) -> None:
    """A generated long-poll ``wait`` answers within MAX_WAIT_S; unparsable ones stay (they get 422)."""
    if case.path != "/api/v1/changes" or not case.query or "wait" not in case.query:
        return
    try:
        wait = float(case.query["wait"])
    except (TypeError, ValueError):
        return
    if wait > MAX_WAIT_S:
        case.query["wait"] = MAX_WAIT_S


fuzz_settings = settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


@schema.parametrize()
@fuzz_settings
@pytest.mark.parametrize("role", FUZZ_ROLES)
def test_as_user_no_server_error(case: Case[Any], api: Api, role: Role) -> None:
    """Ops reaches every catalog handler; admin also the user management (ops gets 403 there)."""
    _clamp_wait(case)
    # Added to the generated headers (none of which is a credential: the schema declares no security).
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    case.call_and_validate(app=api.app, headers=headers, checks=[no_server_error])


@schema.parametrize()
@fuzz_settings
def test_as_anonymous_refused_or_served(case: Case[Any], api: Api) -> None:
    _clamp_wait(case)
    if case.headers:
        for credential in ("authorization", "cookie"):
            case.headers.pop(credential, None)
    response = case.call_and_validate(app=api.app, checks=[no_server_error])
    method, path = case.operation.method.upper(), case.operation.path
    # Only the operation's own method: negative cases also send ones it lacks (405 for everybody).
    needs_user = case.method.upper() == method and \
        ((method in MUTATING and path not in OPEN_MUTATIONS) or (method == "GET" and path in PRIVATE_READS))
    if needs_user:
        assert response.status_code == 401, (case.method, case.formatted_path, response.status_code,
                                             response.text)
    else:
        assert response.status_code < 500 or _no_cluster(response, case)
