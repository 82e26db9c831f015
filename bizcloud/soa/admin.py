"""What `bizcloud soa` shows and changes: the registry's providers and whitelists, for people and scripts.

Reads ZooKeeper directly (the registry is the source consumers read, so that is what to show),
and turns kazoo's failures into one-line errors with a hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

from bizcloud.errors import BizCloudError
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.soa.registry import OWNED_ROOT
from bizcloud.soa.urls import ROOT, InvalidInterfaceError, parse_provider, providers_path, validate_interface
from bizcloud.soa.whitelist import get_whitelist


@contextmanager
def session(settings: Settings, *, timeout: float = 10.0) -> Iterator[KazooClient]:
    """A connected client to the configured ZooKeeper; BizCloudError when there is none."""
    hosts = zookeeper.resolve_hosts(settings)
    if hosts is None:
        raise BizCloudError("ZooKeeper is not running", hint="start it with `make up` "
                            "(or point BIZCLOUD_ZOOKEEPER_HOSTS at an ensemble)")
    client = KazooClient(hosts=hosts, timeout=timeout)
    try:
        client.start(timeout=timeout)
    except Exception as e:
        client.close()
        raise BizCloudError(f"cannot reach ZooKeeper at {hosts}: {e}",
                            hint="check `bizcloud status` and the ZooKeeper log") from e
    try:
        yield client
    except KazooException as e:
        raise BizCloudError(f"ZooKeeper refused the request: {e!r}",
                            hint="try again; see the ZooKeeper log") from e
    finally:
        client.stop()
        client.close()


def checked(interface: str) -> str:
    """``interface`` if valid, else a one-line error naming it and the expected form."""
    try:
        return validate_interface(interface)
    except InvalidInterfaceError as e:
        raise BizCloudError(str(e), hint="name the interface as Dubbo does: its Java type's full name") from e


def interfaces(client: KazooClient) -> list[str]:
    """Every interface with a providers node: BizCloud's and any other Dubbo provider's."""
    found: set[str] = set()
    for root in (ROOT, OWNED_ROOT):
        try:
            found.update(client.get_children(root))
        except NoNodeError:
            continue
    found.discard("config")  # Dubbo's config center lives under /dubbo/config
    return sorted(found)


def providers(client: KazooClient, interface: str | None = None) -> list[dict[str, Any]]:
    """One row per provider node: interface, address, group, pod, and the whole Dubbo URL."""
    rows = []
    for name in [checked(interface)] if interface else interfaces(client):
        try:
            nodes = client.get_children(providers_path(name))
        except NoNodeError:
            continue
        for node in sorted(nodes):
            try:
                provider = parse_provider(node)
            except ValueError:
                rows.append({"interface": name, "address": None, "group": None, "url": node, "valid": False})
                continue
            rows.append({"interface": name, "address": provider.address, "group": provider.group,
                         "application": provider.params.get("application"),
                         "env": provider.params.get("bizcloud.env"),
                         "pod": provider.params.get("bizcloud.pod"),
                         "url": provider.url, "valid": True})
    return rows


def whitelist(client: KazooClient, interface: str) -> dict[str, Any]:
    allowed = get_whitelist(client, checked(interface))
    return {"interface": interface, "open": allowed is None, "allowed": sorted(allowed or ())}
