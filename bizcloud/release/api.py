"""The release API: render, deploy, scale, one-click environments, and the release history.

Long operations answer in one of two ways, chosen by the ``Accept`` header: plain JSON when the
operation is done, or ``application/x-ndjson`` — one JSON object per line as it happens
(``{"step": …}``, ``{"rollout": {"workload": …, "updated": …}}``), then ``{"result": …}`` or
``{"error": …}`` — which the CLI turns into a Rich progress display. A client that goes away
does not stop an operation already writing to the cluster: it runs to its end and its history
row says how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bizcloud.errors import BizCloudError
from bizcloud.kube.errors import KubeUnavailable
from bizcloud.kube.rollout import RolloutError, RolloutStatus
from bizcloud.release.operations import ReleaseOperations
from bizcloud.release.render import to_yaml
from bizcloud.release.store import OperationConflict

NDJSON = "application/x-ndjson"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
Name = Annotated[str, Path(pattern=DNS_LABEL, max_length=63)]

router = APIRouter(prefix="/api/v1/release", tags=["release"])


def get_operations(request: Request) -> ReleaseOperations:
    ops = getattr(request.app.state, "release_operations", None)
    if not isinstance(ops, ReleaseOperations):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "releases need a cluster: the server has no usable kubeconfig")
    return ops


OpsDep = Annotated[ReleaseOperations, Depends(get_operations)]


def user_of(request: Request) -> str:
    user = getattr(request.state, "user", None)
    return str(getattr(user, "name", None) or "anonymous")


def _http_status(e: BizCloudError) -> int:
    if isinstance(e, OperationConflict):
        return status.HTTP_409_CONFLICT
    if isinstance(e, KubeUnavailable):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    if isinstance(e, RolloutError):
        return status.HTTP_502_BAD_GATEWAY
    return status.HTTP_400_BAD_REQUEST


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except BizCloudError as e:
        raise HTTPException(_http_status(e), e.one_line()) from e


# --- models --------------------------------------------------------------------------------------

class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(default=None, description="the image to run; default: what runs now, "
                                                        "else the config's image")
    dry_run: bool = Field(default=False, description="server-side dry-run and diff; nothing is written")
    diff: bool = Field(default=False, description="include the diff against the live objects")


class ScaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int | None = Field(default=None, ge=0, le=1000)
    cpu: str | None = Field(default=None, description="CPU request, e.g. 500m")
    memory: str | None = Field(default=None, description="memory request and limit, e.g. 512Mi")
    rolling: bool = Field(default=False, description="roll the pods instead of resizing them in place")


class EnvironmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=DNS_LABEL, max_length=63)
    source: str = Field(alias="from", pattern=DNS_LABEL, max_length=63,
                        description="the environment whose parameters and images the new one takes")
    only: list[Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]] = Field(
        default_factory=list, description="these services (and what they consume); default: all of `from`")


class HistoryOut(BaseModel):
    id: int
    service: str
    env: str
    action: str
    detail: dict[str, Any]
    user: str
    started_at: str
    finished_at: str | None
    outcome: str
    message: str


# --- streaming -----------------------------------------------------------------------------------

Events = asyncio.Queue[dict[str, Any] | None]
_running: set[asyncio.Task[Any]] = set()   # operations outlive a client that disconnects


def _rollout_event(workload: str, s: RolloutStatus) -> dict[str, Any]:
    return {"rollout": {"workload": workload, "state": s.state.value, "desired": s.desired,
                        "updated": s.updated, "ready": s.ready, "message": s.message}}


async def _respond(request: Request, run: Callable[[Events], Awaitable[Any]]) -> Any:
    """Run the operation; stream its events as NDJSON when the client asks, else answer its result."""
    events: Events = asyncio.Queue()
    if NDJSON not in request.headers.get("accept", ""):
        with _http_errors():
            result = await run(events)
        return result.to_json() if hasattr(result, "to_json") else result

    async def operation() -> None:
        try:
            result = await run(events)
            events.put_nowait({"result": result.to_json() if hasattr(result, "to_json") else result})
        except BizCloudError as e:
            events.put_nowait({"error": e.one_line(), "status": _http_status(e)})
        except Exception as e:  # the stream must end with a line saying what happened
            events.put_nowait({"error": f"internal error: {type(e).__name__}", "status": 500})
            raise
        finally:
            events.put_nowait(None)

    task = asyncio.create_task(operation())
    _running.add(task)
    task.add_done_callback(_running.discard)

    async def lines() -> AsyncIterator[bytes]:
        while (event := await events.get()) is not None:
            yield (json.dumps(event) + "\n").encode()

    return StreamingResponse(lines(), media_type=NDJSON)


# --- routes --------------------------------------------------------------------------------------

@router.get("/{service}/{env}/render", response_class=PlainTextResponse,
            responses={200: {"content": {"text/yaml": {}}}})
async def render(ops: OpsDep, service: Name, env: Name,
                 image: Annotated[str | None, Query(max_length=255)] = None) -> PlainTextResponse:
    """The manifests a deploy would apply, as multi-document YAML `kubectl apply -f -` accepts."""
    with _http_errors():
        docs = await ops.releaser.render(service, env, image=image)
    return PlainTextResponse(to_yaml(docs), media_type="text/yaml")


@router.post("/{service}/{env}/deploy")
async def deploy(request: Request, ops: OpsDep, service: Name, env: Name, body: DeployIn) -> Any:
    """Render → server-side dry-run → (diff) → apply → prune → wait for the rollout."""
    user = user_of(request)

    async def run(events: Events) -> Any:
        return await ops.deploy(service, env, user=user, image=body.image, dry_run=body.dry_run,
                                show_diff=body.diff or body.dry_run,
                                on_step=lambda s: events.put_nowait({"step": s}),
                                on_rollout=lambda w, s: events.put_nowait(_rollout_event(w, s)))

    return await _respond(request, run)


@router.post("/{service}/{env}/scale")
async def scale(request: Request, ops: OpsDep, service: Name, env: Name, body: ScaleIn) -> Any:
    """Replicas through the scale subresource; CPU/memory in place where the cluster can, else rolling."""
    user = user_of(request)

    async def run(_: Events) -> Any:
        return await ops.scale(service, env, user=user, replicas=body.replicas, cpu=body.cpu,
                               memory=body.memory, rolling=body.rolling)

    return await _respond(request, run)


@router.post("/environments", status_code=status.HTTP_201_CREATED)
async def create_environment(request: Request, ops: OpsDep, body: EnvironmentIn) -> Any:
    """A new environment from another: namespace bc-NAME, the chosen services and their SOA closure."""
    user = user_of(request)

    async def run(events: Events) -> Any:
        return await ops.create_environment(body.name, body.source, user=user, only=body.only,
                                            on_step=lambda s: events.put_nowait({"step": s}))

    return await _respond(request, run)


@router.delete("/environments/{name}")
async def delete_environment(request: Request, ops: OpsDep, name: Name) -> dict[str, str]:
    """Delete an environment made by `env create` (its namespace, and so everything in it)."""
    with _http_errors():
        namespace = await ops.delete_environment(name, user=user_of(request))
    return {"deleted": namespace}


@router.get("/history", response_model=list[HistoryOut])
async def history(ops: OpsDep, service: Annotated[str | None, Query(max_length=63)] = None,
                  env: Annotated[str | None, Query(max_length=63)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[HistoryOut]:
    """Deploys, scales, environments and gray steps, newest first."""
    rows = await asyncio.to_thread(ops.store.history, service=service, env=env, limit=limit)
    return [HistoryOut(id=r.id, service=r.service, env=r.env, action=r.action, detail=r.detail, user=r.user,
                       started_at=r.started_at.isoformat(),
                       finished_at=r.finished_at.isoformat() if r.finished_at else None,
                       outcome=r.outcome, message=r.message) for r in rows]
