"""Credentials from Kubernetes Secrets: the MySQL admin accounts, and each service's own password.

The inventory names a Secret (``SecretRef``), never its content. A service's database password
lives in the Secret ``bizcloud-mysql-<service>`` in its environment's namespace (key: the MySQL
user), created here with a random password the first time it is needed, so the pods read it
with ``secretKeyRef`` and nobody ever types it. Values are cached briefly, the admin's too (a
converge is on the path from a pod's start to its grant: no API round trip there): a rotated
password (edit the Secret) reaches the accounts, or the admin sessions, at the next converge
after ``ttl``.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time

from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.configcenter.schema import SecretRef
from bizcloud.kube.client import KubeClient
from bizcloud.kube.errors import Conflict, NotFound
from bizcloud.monitor.instances import ENV_NAMESPACE_PREFIX

SECRET_PREFIX = "bizcloud-mysql-"


def service_secret_name(service: str) -> str:
    return f"{SECRET_PREFIX}{service}"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _decode(data: dict[str, str], key: str, where: str) -> str:
    if key not in data:
        raise ExecutorUnavailableError(f"secret {where} has no key {key!r}",
                                       hint=f"add the key {key!r} to the Secret")
    return base64.b64decode(data[key]).decode()


class KubeCredentials:
    """Implements ``MysqlCredentials`` over Secrets read (and created) with one Kubernetes client."""

    def __init__(self, client: KubeClient, *, ttl: float = 30.0) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._admins: dict[SecretRef, tuple[float, tuple[str, str]]] = {}

    async def admin(self, ref: SecretRef) -> tuple[str, str]:
        cached = self._admins.get(ref)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        value = await self._read_admin(ref)
        self._admins[ref] = (time.monotonic(), value)
        return value

    async def _read_admin(self, ref: SecretRef) -> tuple[str, str]:
        where = f"{ref.namespace}/{ref.name}"
        try:
            secret = await self._client.get(f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}")
        except NotFound:
            raise ExecutorUnavailableError(f"admin secret {where} does not exist",
                                           hint="create it with the keys the inventory names") from None
        data = secret.get("data") or {}
        return _decode(data, ref.username_key, where), _decode(data, ref.password_key, where)

    async def store_admin(self, ref: SecretRef, username: str, password: str) -> None:
        """Create or replace the admin Secret ``ref`` (what `make up` does for its own MariaDB)."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": ref.name, "namespace": ref.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "bizcloud"}},
                "data": {ref.username_key: _b64(username), ref.password_key: _b64(password)}}
        path = f"/api/v1/namespaces/{ref.namespace}/secrets"
        try:
            await self._client.create(path, body)
        except Conflict:
            current = await self._client.get(f"{path}/{ref.name}")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]  # type: ignore[index]
            await self._client.update(f"{path}/{ref.name}", body)

    async def password(self, service: str, env: str, user: str) -> str:
        key = (service, env, user)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        value = await self.ensure(service, env, user)
        self._cache[key] = (time.monotonic(), value)
        return value

    async def ensure(self, service: str, env: str, user: str) -> str:
        """The password of ``user`` for ``service`` in ``env``; created (random) when missing."""
        namespace, name = f"{ENV_NAMESPACE_PREFIX}{env}", service_secret_name(service)
        path = f"/api/v1/namespaces/{namespace}/secrets"
        for _ in range(3):
            try:
                secret = await self._client.get(f"{path}/{name}")
            except NotFound:
                value = secrets.token_urlsafe(24)
                body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "bizcloud",
                                                              "bizcloud.io/service": service}},
                        "data": {user: _b64(value)}}
                with contextlib.suppress(Conflict):
                    await self._client.create(path, body)
                    return value
                continue
            data = secret.get("data") or {}
            if user in data:
                return base64.b64decode(data[user]).decode()
            value = secrets.token_urlsafe(24)
            version = secret["metadata"]["resourceVersion"]  # a concurrent writer makes this a Conflict
            with contextlib.suppress(Conflict):
                await self._client.patch(f"{path}/{name}", {"metadata": {"resourceVersion": version},
                                                            "data": {user: _b64(value)}})
                return value
        raise ExecutorUnavailableError(f"secret {namespace}/{name}: kept changing while being created",
                                       hint="retry; something else is writing this Secret")
