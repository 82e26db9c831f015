"""Whitelists as Dubbo condition routers: what we write, and what we read back (ours and Dubbo admin's)."""

from __future__ import annotations

import json

import pytest

from bizcloud.soa.rules import allowed_ips, is_bizcloud_router, legacy_router_node, whitelist_rule
from bizcloud.soa.urls import java_url_decode


def test_the_rule_document_is_dubbos_condition_router() -> None:
    rule = json.loads(whitelist_rule("com.a.A", ["10.0.0.2", "10.0.0.1", "10.0.0.2"]))
    assert rule == {"configVersion": "v3.0", "scope": "service", "key": "com.a.A", "enabled": True,
                    "force": True, "runtime": True, "priority": 0,
                    "conditions": ["host != 10.0.0.1,10.0.0.2 =>"]}
    assert allowed_ips(whitelist_rule("com.a.A", ["10.0.0.1"])) == {"10.0.0.1"}
    assert allowed_ips(whitelist_rule("com.a.A", [])) == frozenset()


def test_bad_ips_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address"):
        whitelist_rule("com.a.A", ["10.0.0.300"])


@pytest.mark.parametrize(("document", "allowed"), [
    (None, None),
    ("", None),
    ('{"enabled": false, "conditions": ["host != 10.0.0.1 =>"]}', None),
    ('{"conditions": ["method = get* => host = 10.0.0.9"]}', None),
    ('{"conditions": ["host != 10.0.0.1,10.0.0.2 =>", "host != 10.0.0.2,10.0.0.3 =>"]}', {"10.0.0.2"}),
    ('{"conditions": ["=> false"]}', set()),
    # Block YAML, as Dubbo admin writes it.
    ("configVersion: v3.0\nscope: service\nkey: com.a.A\nenabled: true\nconditions:\n"
     "  - 'host != 10.1.1.1,10.1.1.2 =>'\n  - => host != 172.22.3.91\n", {"10.1.1.1", "10.1.1.2"}),
    ("enabled: false\nconditions:\n  - host != 10.1.1.1 =>\n", None),
])
def test_reading_rules(document: str | None, allowed: set[str] | None) -> None:
    assert allowed_ips(document) == (None if allowed is None else frozenset(allowed))


def test_the_legacy_router_node_is_a_dubbo_26_condition_url() -> None:
    node = legacy_router_node("com.a.A", ["10.0.0.1"])
    url = java_url_decode(node)
    assert url.startswith("condition://0.0.0.0/com.a.A?category=routers&dynamic=false&")
    assert "router=condition" in url
    assert java_url_decode(url.split("rule=")[1].split("&")[0]) == "host != 10.0.0.1 =>"
    assert is_bizcloud_router(node)
