"""The gray release's REST routes: ``/api/v1/release/gray/{service}/{env}`` (status) and its operations.

``bizcloud gray …`` calls these with the CLI's token. The routes only translate: the
``GrayController`` (``app.state.gray``) does the work and answers the release's new state. Writes
are authenticated, permission-checked (``bizcloud.web.release_guard``) and audited by the web
layer; the user it found is the one the history names. Errors carry ``{"message", "hint"}``: 400
for bad input, 404 for an unknown service, environment or release, 409 for an operation the
release's state does not allow or one refused because another holds the service (``OperationConflict``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, Field

from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Thresholds
from bizcloud.release.gray import GrayController, GrayNotFound, state_json
from bizcloud.release.gray_plan import GrayError
from bizcloud.release.store import OperationConflict

router = APIRouter(prefix="/api/v1/release/gray", tags=["release"])
NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
Service = Annotated[str, Path(pattern=NAME, description="the service, e.g. demo-web")]
Env = Annotated[str, Path(pattern=NAME, description="the environment, e.g. dev (namespace bc-dev)")]


class Problem(BaseModel):
    message: str
    hint: str


class ErrorBody(BaseModel):
    detail: Problem


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad input, named with its fix; nothing changed"},
    404: {"model": ErrorBody, "description": "no such service, environment or gray release"},
    409: {"model": ErrorBody, "description": "not allowed in the release's state, or another operation "
                                             "holds the service (nothing changed)"},
    503: {"model": ErrorBody, "description": "the server has no cluster to release into"},
}


class ThresholdsIn(BaseModel):
    max_error_rate: float = Field(0.01, description="highest tolerated error rate, 0-1")
    max_p99_ms: float = Field(1000.0, description="highest tolerated p99 latency of the gray group")
    min_requests: int = Field(20, description="fewest requests in a window for a verdict")


class StartIn(BaseModel):
    image: str = Field(description="the image to try, e.g. demo:v2")
    ratio: float | None = Field(None, description="percent of users on gray first (default: the first step, "
                                                  "or 10)")
    uids: list[str] = Field(default_factory=list, description="user IDs always on gray (testers)")
    steps: list[float] = Field(default_factory=list, description="ratios walked through automatically, "
                                                                 "e.g. [10, 30, 50, 100]; 100 promotes")
    interval: str | int = Field(60, description="time each step is analysed: seconds, or 60s, 5m, 1h")
    thresholds: ThresholdsIn | None = None


class SetIn(BaseModel):
    ratio: float = Field(description="percent of users on gray, 0-100")
    uids: list[str] | None = Field(None, description="a new whitelist (omit: keep the current one)")


class RollbackIn(BaseModel):
    reason: str = Field("", max_length=500, description="why, for the history")


def get_controller(request: Request) -> GrayController:
    controller = getattr(request.app.state, "gray", None)
    if not isinstance(controller, GrayController):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            {"message": "the gray controller is not running in this server",
                             "hint": "the server found no cluster: check `bizcloud status` and its "
                                     "kubeconfig"})
    return controller


ControllerDep = Annotated[GrayController, Depends(get_controller)]


def _user(request: Request) -> str:
    user = getattr(request.state, "user", None)
    return str(getattr(user, "name", "anonymous"))


def http_error(e: BizCloudError) -> HTTPException:
    code = (status.HTTP_404_NOT_FOUND if isinstance(e, GrayNotFound) else
            status.HTTP_409_CONFLICT if isinstance(e, GrayError | OperationConflict) else
            status.HTTP_404_NOT_FOUND if "has no config in the config center" in e.message else
            status.HTTP_400_BAD_REQUEST)
    return HTTPException(code, {"message": e.message, "hint": e.hint})


async def _answer(work: Any) -> dict[str, Any]:
    try:
        return state_json(await work)
    except BizCloudError as e:
        raise http_error(e) from e


@router.get("/{service}/{env}", responses=ERRORS)
async def gray_status(service: Service, env: Env, controller: ControllerDep) -> dict[str, Any]:
    """The service's gray release in the environment (``gray`` is null if it never had one), the last
    analysis verdict, and the release history, newest first."""
    return await controller.status(service, env)


@router.post("/{service}/{env}/start", responses=ERRORS)
async def gray_start(service: Service, env: Env, body: StartIn, request: Request,
                     controller: ControllerDep) -> dict[str, Any]:
    """Start a gray release: the gray Deployment at ``image`` gets its share of pods, Ready, then the
    gateway and the SOA layer send ``ratio`` percent of users (and ``uids``) to it."""
    try:
        thresholds = Thresholds(**body.thresholds.model_dump()) if body.thresholds else None
    except BizCloudError as e:
        raise http_error(e) from e
    return await _answer(controller.start(service, env, image=body.image, ratio=body.ratio, uids=body.uids,
                                          steps=body.steps, interval=body.interval, thresholds=thresholds,
                                          user=_user(request)))


@router.post("/{service}/{env}/set", responses=ERRORS)
async def gray_set(service: Service, env: Env, body: SetIn, request: Request,
                   controller: ControllerDep) -> dict[str, Any]:
    """Move to ``ratio`` by hand (pods first when gray grows); the release then holds there."""
    return await _answer(controller.set_ratio(service, env, ratio=body.ratio, uids=body.uids,
                                              user=_user(request)))


@router.post("/{service}/{env}/pause", responses=ERRORS)
async def gray_pause(service: Service, env: Env, request: Request,
                     controller: ControllerDep) -> dict[str, Any]:
    """Stop stepping and analysing; traffic and pods stay."""
    return await _answer(controller.pause(service, env, user=_user(request)))


@router.post("/{service}/{env}/resume", responses=ERRORS)
async def gray_resume(service: Service, env: Env, request: Request,
                     controller: ControllerDep) -> dict[str, Any]:
    """Go on after a pause; the current step is analysed for a whole interval again."""
    return await _answer(controller.resume(service, env, user=_user(request)))


@router.post("/{service}/{env}/promote", responses=ERRORS)
async def gray_promote(service: Service, env: Env, request: Request,
                     controller: ControllerDep) -> dict[str, Any]:
    """The gray image becomes the normal one (rolled and Ready), traffic to normal, gray to 0."""
    return await _answer(controller.promote(service, env, user=_user(request)))


@router.post("/{service}/{env}/rollback", responses=ERRORS)
async def gray_rollback(service: Service, env: Env, request: Request, controller: ControllerDep,
                        body: RollbackIn | None = None) -> dict[str, Any]:
    """Back to the base image: every user to normal at once, normal at full size, gray to 0."""
    reason = body.reason if body else ""
    return await _answer(controller.rollback(service, env, user=_user(request), reason=reason))
