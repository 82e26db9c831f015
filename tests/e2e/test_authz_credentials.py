"""Credentials from real Kubernetes Secrets: cached for ``ttl`` (no API round trip per converge),
a rotated Secret read again after it; a missing admin Secret is an error naming it."""

from __future__ import annotations

import asyncio

import pytest

from bizcloud.authz.credentials import KubeCredentials
from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.configcenter.schema import SecretRef
from bizcloud.kube.client import KubeClient

pytestmark = pytest.mark.e2e


async def test_the_admin_secret_is_cached_for_ttl_then_read_again(kube: KubeClient, namespace: str) -> None:
    ref = SecretRef(namespace=namespace, name="mariadb-admin-cache")
    writer, reader = KubeCredentials(kube), KubeCredentials(kube, ttl=1.0)
    await writer.store_admin(ref, "admin", "first-password")
    assert await reader.admin(ref) == ("admin", "first-password")
    await writer.store_admin(ref, "admin", "rotated-password")
    assert await reader.admin(ref) == ("admin", "first-password")  # within ttl: from memory
    await asyncio.sleep(1.1)
    assert await reader.admin(ref) == ("admin", "rotated-password")
    with pytest.raises(ExecutorUnavailableError, match="does not exist"):
        await reader.admin(SecretRef(namespace=namespace, name="no-such-admin"))
