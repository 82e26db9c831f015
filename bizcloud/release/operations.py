"""Release operations as users start them: one at a time per service and environment, each in the history.

The API (and so the CLI and the console) calls these, never ``Releaser`` directly: each takes the
service+environment's operation lock (``ReleaseStore.operation``, so a deploy during a scale or a
gray step is refused with ``OperationConflict`` instead of racing it), writes a ``running`` history
row with who asked, and finishes it ``ok`` or ``failed`` with the error's one line. A dry run
changes nothing, so it needs no lock and leaves no history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any

from bizcloud.errors import BizCloudError
from bizcloud.release.deploy import DeployOutcome, Releaser, RolloutFn, StepFn, no_rollout, no_step
from bizcloud.release.environments import EnvOutcome, create_environment, delete_environment
from bizcloud.release.gray_plan import ACTIVE
from bizcloud.release.scale import ScaleOutcome, scale
from bizcloud.release.store import ReleaseStore

ENVIRONMENT = "*"   # the history's service for an operation on a whole environment


class ReleaseOperations:
    def __init__(self, releaser: Releaser, store: ReleaseStore) -> None:
        self.releaser = releaser
        self.store = store

    @contextlib.asynccontextmanager
    async def _operation(self, service: str, env: str, action: str, user: str,
                         detail: dict[str, Any]) -> AsyncIterator[None]:
        with self.store.operation(service, env, action, user):
            entry = await asyncio.to_thread(self.store.record, service=service, env=env, action=action,
                                            user=user, detail=detail)
            try:
                yield
            except BaseException as e:
                message = e.one_line() if isinstance(e, BizCloudError) else f"interrupted: {type(e).__name__}"
                await asyncio.to_thread(self.store.finish, entry, outcome="failed", message=message[:500])
                raise
            await asyncio.to_thread(self.store.finish, entry, outcome="ok")

    async def deploy(self, service: str, env: str, *, user: str, image: str | None = None,
                     dry_run: bool = False, show_diff: bool = False, on_step: StepFn = no_step,
                     on_rollout: RolloutFn = no_rollout) -> DeployOutcome:
        if dry_run:
            return await self.releaser.deploy(service, env, image=image, dry_run=True, on_step=on_step)
        async with self._operation(service, env, "deploy", user, {"image": image, "diff": show_diff}):
            return await self.releaser.deploy(service, env, image=image, show_diff=show_diff, on_step=on_step,
                                              on_rollout=on_rollout)

    async def scale(self, service: str, env: str, *, user: str, replicas: int | None = None,
                    cpu: str | None = None, memory: str | None = None, rolling: bool = False) -> ScaleOutcome:
        gray = await asyncio.to_thread(self.store.gray, service, env)
        gray_active = gray is not None and gray.phase in ACTIVE
        detail = {"replicas": replicas, "cpu": cpu, "memory": memory, "rolling": rolling}
        async with self._operation(service, env, "scale", user, detail):
            return await scale(self.releaser, service, env, replicas=replicas, cpu=cpu, memory=memory,
                               rolling=rolling, user=user, gray_active=gray_active)

    async def create_environment(self, name: str, source: str, *, user: str, only: Collection[str] = (),
                                 on_step: StepFn = no_step) -> EnvOutcome:
        detail = {"from": source, "only": sorted(only)}
        async with self._operation(ENVIRONMENT, name, "env-create", user, detail):
            return await create_environment(self.releaser, name, source, only=only, on_step=on_step)

    async def delete_environment(self, name: str, *, user: str) -> str:
        async with self._operation(ENVIRONMENT, name, "env-delete", user, {}):
            return await delete_environment(self.releaser, name, wait=True)
