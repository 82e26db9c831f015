"""Authorization routes under /api/v1: the grants in force, the journal, and why an IP holds a grant.

All reads (the worker in the monitor process writes). ``/grants/required`` answers a new instance's
question "what must I be granted" from the config center, before the instance exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel

from bizcloud import identifiers
from bizcloud.authz.journal import AuthzStore, GrantOut, JournalOut
from bizcloud.authz.planner import VersionedConfig, desired
from bizcloud.configcenter.store import ConfigStore
from bizcloud.monitor.model import Group, Instance, PodUid

router = APIRouter(prefix="/api/v1", tags=["authorization"])
NEW_POD_IP = "0.0.0.0"  # a placeholder subject in /grants/required, never bound


def get_store(request: Request) -> AuthzStore:
    store = getattr(request.app.state, "authz_store", None)
    if not isinstance(store, AuthzStore):
        raise RuntimeError("app.state.authz_store is not set (is the app's lifespan running?)")
    return store


def get_configs(request: Request) -> ConfigStore:
    store = getattr(request.app.state, "config_store", None)
    if not isinstance(store, ConfigStore):
        raise RuntimeError("app.state.config_store is not set (is the app's lifespan running?)")
    return store


StoreDep = Annotated[AuthzStore, Depends(get_store)]
ConfigsDep = Annotated[ConfigStore, Depends(get_configs)]


class Explanation(BaseModel):
    """Each grant the IP holds (or is about to), with its reasons, and the journal lines about it."""

    ip: str
    grants: list[GrantOut]
    journal: list[JournalOut]
    because: list[str]


class RequiredGrant(BaseModel):
    kind: str
    target: str
    grant: str
    dependency: str


class Required(BaseModel):
    service: str
    env: str
    config_version: int
    grants: list[RequiredGrant]
    refused: list[str]


def _ip(value: str | None) -> str | None:
    try:
        return None if value is None else identifiers.ip_address(value, "ip")
    except identifiers.InvalidNameError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, e.one_line()) from e


@router.get("/grants", response_model=list[GrantOut])
def list_grants(store: StoreDep, ip: Annotated[str | None, Query(description="a pod IP")] = None,
                service: Annotated[str | None, Query(max_length=63)] = None,
                target: Annotated[str | None, Query(max_length=255)] = None,
                kind: Annotated[str | None, Query(pattern="^(mysql|soa|tcp)$")] = None) -> list[GrantOut]:
    return store.grants(ip=_ip(ip), service=service, target=target, kind=kind)


@router.get("/grants/journal", response_model=list[JournalOut])
def grants_journal(store: StoreDep, ip: Annotated[str | None, Query()] = None,
                   service: Annotated[str | None, Query(max_length=63)] = None,
                   target: Annotated[str | None, Query(max_length=255)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[JournalOut]:
    return store.journal(ip=_ip(ip), service=service, target=target, limit=limit)


@router.get("/grants/explain", response_model=Explanation)
def explain(store: StoreDep, ip: Annotated[str, Query(description="the IP whose grants to explain")],
            target: Annotated[str | None, Query(max_length=255)] = None) -> Explanation:
    """Why does this IP hold this grant: the pods, configs and dependencies behind it, and its history."""
    address = _ip(ip)
    assert address is not None
    grants = store.grants(ip=address, target=target)
    because = []
    for g in grants:
        for r in g.reasons:
            because.append(f"{g.kind} {g.target} {g.grant} ({g.state}): pod {r['namespace']}/{r['pod']} "
                           f"(uid {r['pod_uid']}) of service {r['service']} in {r['env']} declares "
                           f"dependencies.{r['dependency']} in config version {r['config_version']}")
    return Explanation(ip=address, grants=grants, journal=store.journal(ip=address, target=target, limit=100),
                       because=because)


@router.get("/grants/required", response_model=Required)
def required(configs: ConfigsDep, service: Annotated[str, Query(max_length=63)],
             env: Annotated[str, Query(max_length=63)]) -> Required:
    """What a new instance of ``service`` in ``env`` must be granted (its IP is not known yet)."""
    snapshot = configs.latest()
    config = snapshot.services.get(service)
    if config is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"service {service!r} has no config — apply one with `bizcloud config apply`")
    version = snapshot.versions.get(service, 0)
    pod = Instance(service=service, env=env, group=Group.NORMAL, namespace=f"bc-{env}", pod="(new)",
                   uid=PodUid("(new)"), ip=NEW_POD_IP, ready=True)
    plan = desired({service: VersionedConfig(config, version)}, snapshot.inventory, [pod])
    grants = sorted(((g, r) for g, reasons in plan.reasons.items() for r in reasons),
                    key=lambda item: item[0].sort_key())
    return Required(service=service, env=env, config_version=version,
                    grants=[RequiredGrant(kind=g.kind.value, target=g.target, grant=g.detail.text(),
                                          dependency=r.dependency) for g, r in grants],
                    refused=[f"{r.dependency}: {r.message}" for r in plan.refusals])
