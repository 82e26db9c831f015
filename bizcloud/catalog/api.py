"""The service management center's REST API under /api/v1, and its change stream.

People, scripts and the console manage services, environments and routes here; readers that
must follow the cluster (the gateway's upstream sync, the consoles) take a snapshot from
``/instances`` and then long-poll ``/changes?since=<revision>``, which answers as soon as the
monitor — another process — commits a change. Routes translate the store's domain errors into
HTTP (404, 409, 410, 503) and nothing below them knows about HTTP. ``web/app.py`` mounts the router
and puts the store and the revision watch on ``app.state``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from bizcloud.catalog.errors import AlreadyExists, CatalogUnavailable, InUse, NotFound
from bizcloud.catalog.feed import RevisionWatch
from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.schemas import (
    DNS_LABEL,
    ChangePage,
    ChangePublic,
    EnvironmentCreate,
    EnvironmentPublic,
    GrayPolicyIn,
    GrayPolicyPublic,
    InstanceList,
    InstancePublic,
    RouteCreate,
    RoutePublic,
    ServiceCreate,
    ServicePublic,
    ServiceUpdate,
)
from bizcloud.catalog.store import CatalogStore, ChangeOut
from bizcloud.monitor.model import Group

MAX_WAIT_S = 60.0
MAX_PAGE = 1000
MAX_ID = 2**63 - 1  # SQLite's (and Postgres' bigint) largest integer: a larger id is a 422, not a 500


def get_store(request: Request) -> CatalogStore:
    store = getattr(request.app.state, "catalog_store", None)
    if not isinstance(store, CatalogStore):
        raise RuntimeError("app.state.catalog_store is not set (is the app's lifespan running?)")
    return store


def get_watch(request: Request) -> RevisionWatch:
    watch = getattr(request.app.state, "revision_watch", None)
    if not isinstance(watch, RevisionWatch):
        raise RuntimeError("app.state.revision_watch is not set (is the app's lifespan running?)")
    return watch


StoreDep = Annotated[CatalogStore, Depends(get_store)]
WatchDep = Annotated[RevisionWatch, Depends(get_watch)]
NameParam = Annotated[str, Path(pattern=DNS_LABEL, max_length=63)]

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, e.one_line()) from e
    except (AlreadyExists, InUse) as e:
        raise HTTPException(status.HTTP_409_CONFLICT, e.one_line()) from e
    except CatalogUnavailable as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, e.one_line()) from e


# Plain routes are sync: FastAPI runs them in its thread pool, where the sync store belongs.

@router.get("/services", response_model=list[ServicePublic])
def list_services(store: StoreDep) -> list[ServicePublic]:
    with _http_errors():
        return [ServicePublic.model_validate(s) for s in store.list_services()]


@router.post("/services", response_model=ServicePublic, status_code=status.HTTP_201_CREATED)
def create_service(store: StoreDep, body: ServiceCreate) -> ServicePublic:
    with _http_errors():
        created = store.create_service(name=body.name, description=body.description, owner=body.owner)
        return ServicePublic.model_validate(created)


@router.get("/services/{name}", response_model=ServicePublic)
def get_service(store: StoreDep, name: NameParam) -> ServicePublic:
    with _http_errors():
        return ServicePublic.model_validate(store.get_service(name=name))


@router.put("/services/{name}", response_model=ServicePublic)
def update_service(store: StoreDep, name: NameParam, body: ServiceUpdate) -> ServicePublic:
    with _http_errors():
        updated = store.update_service(name=name, description=body.description, owner=body.owner)
        return ServicePublic.model_validate(updated)


@router.delete("/services/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_service(store: StoreDep, name: NameParam) -> None:
    with _http_errors():
        store.delete_service(name=name)


@router.get("/services/{name}/instances", response_model=list[InstancePublic])
def service_instances(store: StoreDep, name: NameParam, env: str | None = None,
                      group: Group | None = None) -> list[InstancePublic]:
    with _http_errors():
        store.get_service(name=name)
        return [InstancePublic.model_validate(i) for i in store.instances(service=name, env=env, group=group)]


@router.get("/services/{name}/gray", response_model=GrayPolicyPublic)
def get_gray(store: StoreDep, name: NameParam) -> GrayPolicyPublic:
    """The service's gray policy (the defaults until one is set)."""
    with _http_errors():
        return _gray_public(store.get_gray(service=name))


@router.put("/services/{name}/gray", response_model=GrayPolicyPublic)
def set_gray(store: StoreDep, name: NameParam, body: GrayPolicyIn) -> GrayPolicyPublic:
    """Replace the service's gray policy; gateways follow it through a GRAY change on the stream."""
    with _http_errors():
        policy = GrayPolicyOut(service=name, ratio=body.ratio, whitelist=tuple(body.whitelist),
                               fallback=body.fallback, uid_source=body.uid_source, uid_name=body.uid_name)
        return _gray_public(store.set_gray(policy=policy))


@router.get("/gray", response_model=list[GrayPolicyPublic])
def list_gray(store: StoreDep) -> list[GrayPolicyPublic]:
    """Every gray policy that was set (the gateway's seed reads this with routes and instances)."""
    with _http_errors():
        return [_gray_public(p) for p in store.list_gray()]


def _gray_public(policy: GrayPolicyOut) -> GrayPolicyPublic:
    return GrayPolicyPublic(service=policy.service, ratio=policy.ratio, whitelist=list(policy.whitelist),
                            fallback=policy.fallback, uid_source=policy.uid_source, uid_name=policy.uid_name,
                            updated_at=policy.updated_at)


@router.get("/instances", response_model=InstanceList)
def instances(store: StoreDep, service: str | None = None, env: str | None = None,
              group: Group | None = None) -> InstanceList:
    """A snapshot and its revision, read together: continue with ``/changes?since=<revision>``."""
    with _http_errors():
        snap = store.snapshot(service=service, env=env, group=group)
        return InstanceList(revision=snap.revision,
                            instances=[InstancePublic.model_validate(i) for i in snap.instances])


@router.get("/environments", response_model=list[EnvironmentPublic])
def list_environments(store: StoreDep) -> list[EnvironmentPublic]:
    with _http_errors():
        return [EnvironmentPublic.model_validate(e) for e in store.list_environments()]


@router.post("/environments", response_model=EnvironmentPublic, status_code=status.HTTP_201_CREATED)
def create_environment(store: StoreDep, body: EnvironmentCreate) -> EnvironmentPublic:
    with _http_errors():
        return EnvironmentPublic.model_validate(store.create_environment(name=body.name,
                                                                         namespace=body.namespace))


@router.get("/routes", response_model=list[RoutePublic])
def list_routes(store: StoreDep, service: str | None = None) -> list[RoutePublic]:
    with _http_errors():
        return [RoutePublic.model_validate(r) for r in store.list_routes(service=service)]


@router.post("/routes", response_model=RoutePublic, status_code=status.HTTP_201_CREATED)
def create_route(store: StoreDep, body: RouteCreate) -> RoutePublic:
    with _http_errors():
        created = store.create_route(host=body.host, path_prefix=body.path_prefix, service=body.service,
                                     env=body.env)
        return RoutePublic.model_validate(created)


@router.delete("/routes/{route_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_route(store: StoreDep, route_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> None:
    with _http_errors():
        store.delete_route(route_id=route_id)


@router.get("/changes", response_model=ChangePage)
async def changes(
    store: StoreDep,
    watch: WatchDep,
    since: Annotated[int, Query(ge=0, le=MAX_ID,
                                      description="the last revision you have seen; 0 for all")] = 0,
    wait: Annotated[float, Query(ge=0, description=f"seconds to wait for a change (at most {MAX_WAIT_S:g})")]
    = 0.0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ChangePage:
    """Changes after ``since``, at once if there are any, else the first ones within ``wait`` seconds.

    410 when ``since`` is ahead of the catalog (its database was replaced): take a new snapshot.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT_S)

    def read() -> tuple[int, list[ChangeOut]]:  # one trip to a worker thread: a woken waiter answers sooner
        return store.latest_revision(), store.changes_since(revision=since, limit=limit + 1)

    with _http_errors():
        while True:
            latest, found = await asyncio.to_thread(read)
            if since > latest:
                raise HTTPException(status.HTTP_410_GONE,
                                    f"revision {since} is ahead of the catalog's {latest}: "
                                    "take a snapshot from /api/v1/instances and resume from its revision")
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                break
            if not await watch.wait_beyond(since, timeout=remaining):
                break
    page = found[:limit]
    return ChangePage(revision=max([latest, *(c.revision for c in page)]),
                      next=page[-1].revision if page else since, more=len(found) > limit,
                      changes=[ChangePublic.model_validate(c) for c in page])
