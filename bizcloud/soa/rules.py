"""Whitelists as Dubbo condition routers, and gray policies: where they live in ZooKeeper, as values.

Purely computational, standard library only (the provider helper in app images reads these).

A whitelist of interface ``I`` is Dubbo's own access rule, a *condition router*, in the two
places Dubbo reads them:

- Dubbo 2.7 and 3 (the config center on ZooKeeper): the node
  ``/dubbo/config/dubbo/I.condition-router`` holding the rule document
  ``{scope: service, key: I, force: true, runtime: true, enabled: true,
  conditions: ["host != 10.0.0.1,10.0.0.2 =>"]}``. We write it as JSON, which is YAML too, so
  Dubbo's SnakeYAML parses it and our readers need no YAML library;
- Dubbo 2.6 (the registry): a ``condition://0.0.0.0/I?category=routers&rule=…`` node under
  ``/dubbo/I/routers``.

``host != a,b =>`` is Dubbo's documented whitelist: a consumer whose host is not listed matches
the "when" part and gets no provider. A Dubbo consumer applies it when choosing a provider;
BizCloud's provider helper (``provider.Whitelist``) enforces the same rule on incoming calls.
No rule means open; a rule with an empty list (``=> false``) means nobody.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable

from bizcloud.soa.urls import ROOT, java_url_decode, java_url_encode, validate_interface

CONFIG_ROOT = f"{ROOT}/config/dubbo"
GRAY_ROOT = "/bizcloud/gray"
RULE_NAME = "bizcloud-whitelist"
_WHITELIST = re.compile(r"^\s*host\s*!=\s*([^=>]+?)\s*=>\s*$")
_DENY_ALL = re.compile(r"^\s*=>\s*false\s*$")


def condition_router_path(interface: str) -> str:
    return f"{CONFIG_ROOT}/{interface}.condition-router"


def routers_path(interface: str) -> str:
    return f"{ROOT}/{interface}/routers"


def gray_policy_path(service: str) -> str:
    return f"{GRAY_ROOT}/{service}"


def normalize_ips(ips: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated IPv4/IPv6 addresses; raises ValueError naming a bad one."""
    result = set()
    for ip in ips:
        try:
            result.add(str(ipaddress.ip_address(ip.strip())))
        except ValueError as e:
            raise ValueError(f"{ip!r} is not an IP address; give addresses like 10.88.0.5") from e
    return tuple(sorted(result))


def whitelist_condition(ips: Iterable[str]) -> str:
    """The condition that lets only ``ips`` through. Purely computational.

    >>> whitelist_condition(["10.0.0.2", "10.0.0.1"])
    'host != 10.0.0.1,10.0.0.2 =>'
    >>> whitelist_condition([])
    '=> false'
    """
    allowed = normalize_ips(ips)
    return f"host != {','.join(allowed)} =>" if allowed else "=> false"


def whitelist_rule(interface: str, ips: Iterable[str]) -> bytes:
    """The config-center rule document (JSON, a subset of YAML) for ``interface``."""
    validate_interface(interface)
    rule = {"configVersion": "v3.0", "scope": "service", "key": interface, "enabled": True, "force": True,
            "runtime": True, "priority": 0, "conditions": [whitelist_condition(ips)]}
    return json.dumps(rule, indent=2).encode()


def legacy_router_node(interface: str, ips: Iterable[str]) -> str:
    """The Dubbo 2.6 router node name under ``/dubbo/I/routers`` (an encoded ``condition://`` URL)."""
    rule = java_url_encode(whitelist_condition(ips))
    url = (f"condition://0.0.0.0/{interface}?category=routers&dynamic=false&enabled=true&force=true"
           f"&name={RULE_NAME}&priority=0&router=condition&rule={rule}&runtime=true")
    return java_url_encode(url)


def is_bizcloud_router(node: str) -> bool:
    return f"name={RULE_NAME}&" in java_url_decode(node)


def _conditions(text: str) -> tuple[bool, list[str]]:
    """(enabled, conditions) from a rule document: JSON, or the block YAML Dubbo's admin writes."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data.get("enabled", True) is not False, [str(c) for c in data.get("conditions") or []]
    enabled, conditions, in_list = True, [], False
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if re.match(r"^enabled\s*:\s*false\s*$", line.strip()):
            enabled = False
        if line.startswith("conditions:"):
            in_list = True
            continue
        if in_list and line.lstrip().startswith("- "):
            conditions.append(line.lstrip()[2:].strip().strip("'\""))
        elif in_list and line and not line.startswith(" "):
            in_list = False
    return enabled, conditions


def allowed_ips(text: str | bytes | None) -> frozenset[str] | None:
    """Who a rule document lets call: None for everyone (no rule, disabled, or no whitelist in it).

    Several whitelist conditions intersect, as Dubbo applies them one after the other.
    Purely computational.
    """
    if text is None:
        return None
    enabled, conditions = _conditions(text.decode() if isinstance(text, bytes) else text)
    if not enabled:
        return None
    allowed: frozenset[str] | None = None
    for condition in conditions:
        if _DENY_ALL.match(condition):
            return frozenset()
        found = _WHITELIST.match(condition)
        if found:
            ips = frozenset(ip.strip() for ip in found.group(1).split(",") if ip.strip())
            allowed = ips if allowed is None else allowed & ips
    return allowed
