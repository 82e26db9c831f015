"""The config center's REST routes under /api/v1: upload, read, history, diff, delete, the dependency graph.

Uploads are the YAML file itself (``Content-Type: text/yaml``; one or several ``---``-separated
documents, stored all or none), so ``bizcloud config apply`` and ``curl --data-binary @file`` send
the same bytes. A refused upload is a 422 whose ``detail`` is ``{"message", "problems"}``, each
problem starting with its field path. Writes are authenticated and audited by the web layer (the
app's ``AuditGuard``, and its per-config permission check through ``documents_in_body``);
the author of a version is the user the web layer found. Reads are open like the catalog's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from bizcloud.configcenter import documents, graph
from bizcloud.configcenter.documents import Document
from bizcloud.configcenter.errors import ConfigError, ConfigNotFound
from bizcloud.configcenter.models import COMMENT_LENGTH
from bizcloud.configcenter.store import ConfigStore, VersionOut

router = APIRouter(prefix="/api/v1", tags=["configs"])
log = logging.getLogger("bizcloud.configcenter")
YAML_TYPES = ("text/yaml", "application/yaml", "application/x-yaml", "text/plain")
ConfigName = Annotated[str, Path(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                                 description="a service name, or `inventory`")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


def get_config_store(request: Request) -> ConfigStore:
    store = getattr(request.app.state, "config_store", None)
    if not isinstance(store, ConfigStore):
        raise RuntimeError("app.state.config_store is not set (is the app's lifespan running?)")
    return store


StoreDep = Annotated[ConfigStore, Depends(get_config_store)]


def _refused(e: ConfigError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         {"message": e.message, "problems": e.problems, "hint": e.hint})


def _missing(e: ConfigNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, e.one_line())


async def body_text(request: Request) -> str:
    """The uploaded YAML (a PUT's body); "" for other methods."""
    if request.method != "PUT":
        return ""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "send the YAML file itself with Content-Type: text/yaml")
    raw = await request.body()
    if len(raw) > documents.MAX_TEXT:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"at most {documents.MAX_TEXT} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refused(ConfigError("the upload is not UTF-8 text", [f"byte {e.start}: not UTF-8"],
                                   hint="save the file as UTF-8")) from e


async def documents_in_body(text: Annotated[str, Depends(body_text)]) -> list[Document]:
    """The upload's documents, validated on their own (references are checked when stored).

    The web layer's permission check depends on this too (FastAPI computes it once per request),
    so it can decide per config name before anything is stored.
    """
    if not text:
        return []
    try:
        return documents.read(text)
    except ConfigError as e:
        raise _refused(e) from e


# --- models --------------------------------------------------------------------------------------

class ConfigSummary(BaseModel):
    kind: Literal["Service", "Inventory"]
    name: str
    version: int
    deleted: bool
    author: str
    comment: str
    created_at: datetime


class ConfigPublic(ConfigSummary):
    yaml: str = Field(description="the document as uploaded (empty for a deletion)")
    config: dict[str, Any] | None = Field(description="the validated config, defaults filled in "
                                                      "(null for a deletion)")


class AppliedPublic(BaseModel):
    kind: Literal["Service", "Inventory"]
    name: str
    version: int
    status: Literal["created", "unchanged"]


class ApplyResult(BaseModel):
    revision: int = Field(description="the config center's revision after this upload")
    results: list[AppliedPublic]


class DiffPublic(BaseModel):
    name: str
    old: int = Field(serialization_alias="from", description="the older version (0: nothing)")
    new: int = Field(serialization_alias="to")
    diff: str = Field(description="unified diff of the canonical YAML")


class GraphNode(BaseModel):
    id: str
    kind: str
    name: str
    known: bool
    detail: dict[str, Any]


class GraphEdge(BaseModel):
    source: str
    target: str
    kind: str
    detail: dict[str, Any]


class GraphPublic(BaseModel):
    revision: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class ProblemDetail(BaseModel):
    message: str
    problems: list[str]
    hint: str


class Refused(BaseModel):
    detail: ProblemDetail


def _summary(v: VersionOut) -> ConfigSummary:
    return ConfigSummary(kind=v.kind, name=v.name, version=v.version, deleted=v.deleted,  # type: ignore[arg-type]
                         author=v.author, comment=v.comment, created_at=v.created_at)


def _public(v: VersionOut) -> ConfigPublic:
    return ConfigPublic(**_summary(v).model_dump(), yaml=v.yaml, config=v.config)


def _author(request: Request) -> str:
    user = getattr(request.state, "user", None)
    return str(getattr(user, "name", "anonymous"))


# --- routes --------------------------------------------------------------------------------------

@router.put("/configs", response_model=ApplyResult, responses={422: {"model": Refused}},
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/yaml": {"schema": {"type": "string"},
                              "example": "kind: Service\nname: demo-api\n"}}}})
async def apply_configs(request: Request, store: StoreDep,
                        docs: Annotated[list[Document], Depends(documents_in_body)],
                        text: Annotated[str, Depends(body_text)],
                        comment: Annotated[str, Query(max_length=COMMENT_LENGTH)] = "") -> ApplyResult:
    """Store a new version of each config in the YAML body (all or none); equal content is "unchanged"."""
    if not docs:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "send a YAML body")
    try:
        applied = await asyncio.to_thread(store.apply, text, author=_author(request), comment=comment)
        revision = await asyncio.to_thread(store.revision)
    except ConfigError as e:
        raise _refused(e) from e
    log.info(json.dumps({"msg": "configs applied", "author": _author(request), "revision": revision,
                         "results": [f"{a.name} v{a.version} {a.status}" for a in applied]}))
    return ApplyResult(revision=revision, results=[AppliedPublic(kind=a.kind, name=a.name,  # type: ignore[arg-type]
                                                                 version=a.version, status=a.status)
                                                   for a in applied])


@router.get("/configs", response_model=list[ConfigSummary])
async def list_configs(store: StoreDep) -> list[ConfigSummary]:
    """The current version of every live config: the inventory first, then services by name."""
    return [_summary(v) for v in await asyncio.to_thread(store.list_latest)]


@router.get("/configs/{name}", response_model=ConfigPublic)
async def get_config(name: ConfigName, store: StoreDep) -> ConfigPublic:
    try:
        return _public(await asyncio.to_thread(store.get, name))
    except ConfigNotFound as e:
        raise _missing(e) from e


@router.get("/configs/{name}/versions", response_model=list[ConfigSummary])
async def config_history(name: ConfigName, store: StoreDep) -> list[ConfigSummary]:
    try:
        return [_summary(v) for v in await asyncio.to_thread(store.history, name)]
    except ConfigNotFound as e:
        raise _missing(e) from e


@router.get("/configs/{name}/versions/{version}", response_model=ConfigPublic)
async def config_version(name: ConfigName, version: Version, store: StoreDep) -> ConfigPublic:
    try:
        return _public(await asyncio.to_thread(store.get, name, version))
    except ConfigNotFound as e:
        raise _missing(e) from e


@router.get("/configs/{name}/diff", response_model=DiffPublic, response_model_by_alias=True)
async def config_diff(name: ConfigName, store: StoreDep,
                      old: Annotated[int | None, Query(alias="from", ge=0, le=2**31 - 1,
                                                       description="default: the one before `to`")] = None,
                      new: Annotated[int | None, Query(alias="to", ge=1, le=2**31 - 1,
                                                       description="default: the newest")] = None,
                      ) -> DiffPublic:
    try:
        diff = await asyncio.to_thread(store.diff, name, old, new)
    except ConfigNotFound as e:
        raise _missing(e) from e
    return DiffPublic(name=name, old=diff.old, new=diff.new, diff=diff.text)


@router.delete("/configs/{name}", response_model=ConfigSummary, responses={422: {"model": Refused}})
async def delete_config(name: ConfigName, request: Request, store: StoreDep,
                        comment: Annotated[str, Query(max_length=COMMENT_LENGTH)] = "") -> ConfigSummary:
    """A deletion is a version of its own: the config stops counting and its history stays."""
    try:
        tombstone = await asyncio.to_thread(store.delete, name, author=_author(request), comment=comment)
    except ConfigNotFound as e:
        raise _missing(e) from e
    except ConfigError as e:
        raise _refused(e) from e
    log.info(json.dumps({"msg": "config deleted", "author": tombstone.author, "name": name,
                         "version": tombstone.version}))
    return _summary(tombstone)


@router.get("/graph", response_model=GraphPublic,
            responses={200: {"content": {"text/vnd.graphviz": {"schema": {"type": "string"}}}}})
async def dependency_graph(store: StoreDep,
                           service: Annotated[str | None, Query(max_length=63, description=(
                               "one service's subgraph: what it uses, who uses it"))] = None,
                           output: Annotated[Literal["json", "dot"], Query(alias="format")] = "json",
                           ) -> GraphPublic | Response:
    """The dependency graph of the live configs, as JSON or Graphviz text."""
    snapshot = await asyncio.to_thread(store.latest)
    full = graph.build(services=snapshot.services, inventory=snapshot.inventory)
    try:
        result = full.for_service(service) if service else full
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live config for service {service!r}") from None
    if output == "dot":
        return PlainTextResponse(result.to_dot(), media_type="text/vnd.graphviz")
    data = result.to_json()
    return GraphPublic(revision=snapshot.revision, nodes=[GraphNode(**n) for n in data["nodes"]],
                       edges=[GraphEdge(**e) for e in data["edges"]])
