"""The grants API on the real app: what an IP holds, why, its journal, and what a new pod must get."""

from __future__ import annotations

import httpx
import pytest
import yaml

from bizcloud.authz.grants import Converged, Grant, Kind, MysqlAccess, Reason, TargetPlan
from bizcloud.authz.journal import AuthzStore
from bizcloud.catalog.db import make_engine
from bizcloud.configcenter.store import ConfigStore
from tests.catalog.conftest import db_url
from tests.catalog.test_api import Server, server

__all__ = ["db_url", "server"]  # the catalog's fixtures: the real app on uvicorn, on this test's database

TARGET = "main/10.1.0.1:3306"
ACCESS = MysqlAccess("demo_api", "demo", ("INSERT", "SELECT"), "demo-api", "dev")
REASON = Reason(
    service="demo-api",
    env="dev",
    namespace="bc-dev",
    pod="demo-api-7f9",
    pod_uid="u-1",
    config_version=3,
    dependency="mysql[0]",
)


@pytest.fixture
def seeded(server: Server) -> Server:
    engine = make_engine(server.db_url)
    grant = Grant(Kind.MYSQL, "10.88.0.5", TARGET, ACCESS)
    AuthzStore(engine).converged(
        TargetPlan(Kind.MYSQL, TARGET, frozenset({grant}), frozenset({"demo_api"})),
        Converged(added=(grant,)),
        {grant: (REASON,)},
        trigger="UP demo-api-7f9 (u-1)",
        attempts=1,
    )
    ConfigStore(engine).apply(
        yaml.safe_dump_all(
            [
                {
                    "kind": "Inventory",
                    "mysql": {
                        "main": {
                            "master": {"host": "10.1.0.1"},
                            "slaves": [{"host": "10.1.0.2"}],
                            "admin": {"namespace": "bizcloud-system", "name": "a"},
                            "environments": ["dev"],
                        }
                    },
                },
                {
                    "kind": "Service",
                    "name": "demo-api",
                    "dependencies": {
                        "mysql": [
                            {
                                "cluster": "main",
                                "database": "demo",
                                "user": "demo_api",
                                "privileges": ["SELECT"],
                                "roles": ["master", "slaves"],
                            }
                        ]
                    },
                },
            ]
        ),
        author="test",
    )
    engine.dispose()
    return server


def test_grants_of_an_ip_and_why(seeded: Server) -> None:
    with httpx.Client(base_url=seeded.base_url) as http:
        [held] = http.get("/api/v1/grants", params={"ip": "10.88.0.5"}).json()
        assert (held["kind"], held["target"], held["grant"], held["state"]) == (
            "mysql",
            TARGET,
            "demo_api INSERT,SELECT ON demo.*",
            "applied",
        )
        assert http.get("/api/v1/grants", params={"service": "other"}).json() == []
        why = http.get("/api/v1/grants/explain", params={"ip": "10.88.0.5"}).json()
        assert why["because"] == [
            f"mysql {TARGET} demo_api INSERT,SELECT ON demo.* (applied): pod bc-dev/demo-api-7f9 "
            "(uid u-1) of service demo-api in dev declares dependencies.mysql[0] in config version 3"
        ]
        assert [(j["action"], j["outcome"], j["trigger"]) for j in why["journal"]] == [
            ("grant", "ok", "UP demo-api-7f9 (u-1)")
        ]
        bad = http.get("/api/v1/grants/explain", params={"ip": "10.0.0.1; DROP"})
        assert bad.status_code == 422 and "ip: '10.0.0.1; DROP' is not valid" in bad.text


def test_what_a_new_pod_must_be_granted(seeded: Server) -> None:
    with httpx.Client(base_url=seeded.base_url) as http:
        needed = http.get("/api/v1/grants/required", params={"service": "demo-api", "env": "dev"}).json()
        assert [(g["target"], g["grant"]) for g in needed["grants"]] == [
            ("main/10.1.0.1:3306", "demo_api SELECT ON demo.*"),
            ("main/10.1.0.2:3306", "demo_api SELECT ON demo.*"),
        ]
        refused = http.get("/api/v1/grants/required", params={"service": "demo-api", "env": "prod"}).json()
        assert refused["grants"] == [] and refused["refused"] == [
            "mysql[0]: cluster 'main' does not serve environment 'prod'"
        ]
        assert (
            http.get("/api/v1/grants/required", params={"service": "nope", "env": "dev"}).status_code == 404
        )
