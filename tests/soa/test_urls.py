"""Dubbo's URL layout: encoding as Java's URLEncoder, provider URLs both ways, name validation."""

from __future__ import annotations

import pytest

from bizcloud.soa.urls import (
    InvalidInterfaceError,
    Provider,
    java_url_decode,
    java_url_encode,
    parse_interfaces,
    parse_provider,
    provider_params,
    validate_interface,
)


@pytest.mark.parametrize(("text", "java"), [
    # Values of java.net.URLEncoder.encode(text, "UTF-8").
    ("dubbo://10.0.0.1:20880/a.B?x=1&y=2", "dubbo%3A%2F%2F10.0.0.1%3A20880%2Fa.B%3Fx%3D1%26y%3D2"),
    ("a b", "a+b"),
    ("*_.-", "*_.-"),
    ("~", "%7E"),
    ("é", "%C3%A9"),
    ("host != 10.0.0.1 =>", "host+%21%3D+10.0.0.1+%3D%3E"),
])
def test_encoding_matches_javas_url_encoder(text: str, java: str) -> None:
    assert java_url_encode(text) == java
    assert java_url_decode(java) == text


@pytest.mark.parametrize("name", ["com.example.DemoApi", "A", "org.apache.dubbo.demo.DemoService",
                                  "a_b.$C1"])
def test_valid_interfaces(name: str) -> None:
    assert validate_interface(name) == name


@pytest.mark.parametrize(("name", "reason"), [
    ("", "empty"), ("com..Demo", "bad_name"), ("1com.Demo", "bad_name"), ("com/Demo", "bad_name"),
    ("com.Demo ", "bad_name"), ("com.De mo", "bad_name"), ("../etc", "bad_name"), ("a" * 201, "too_long"),
])
def test_invalid_interfaces_are_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidInterfaceError) as refused:
        validate_interface(name)
    assert refused.value.reason == reason


@pytest.mark.parametrize(("annotation", "result"), [
    ("com.a.A", ("com.a.A",)),
    (" com.a.A , com.b.B", ("com.a.A", "com.b.B")),
])
def test_annotations(annotation: str, result: tuple[str, ...]) -> None:
    assert parse_interfaces(annotation) == result


@pytest.mark.parametrize(("annotation", "reason"), [
    (None, "no_annotation"), ("", "empty"), (" , ", "empty"), ("com.a.A,,com.b.B", "malformed"),
    ("com.a.A,com.a.A", "malformed"), ("com.a.A,not valid", "bad_name"), ('{"json": 1}', "bad_name"),
])
def test_malformed_annotations_are_refused_whole(annotation: str | None, reason: str) -> None:
    with pytest.raises(InvalidInterfaceError) as refused:
        parse_interfaces(annotation)
    assert refused.value.reason == reason


def test_provider_url_round_trips_through_its_node_name() -> None:
    params = provider_params(interface="com.a.A", application="demo-api", group="gray",
                             extra={"bizcloud.uid": "u-1"})
    provider = Provider(host="10.88.0.7", port=8080, interface="com.a.A", group="gray", params=params)
    assert provider.url.startswith("rest://10.88.0.7:8080/com.a.A?anyhost=false&application=demo-api&")
    for param in ("dubbo.tag=gray", "dynamic=false", "side=provider", "bizcloud.uid=u-1"):
        assert param in provider.url
    assert provider.path == f"/dubbo/com.a.A/providers/{provider.node}"
    assert "/" not in provider.node
    assert parse_provider(provider.node) == provider


def test_a_normal_provider_has_no_tag_and_foreign_dubbo_urls_parse() -> None:
    normal = provider_params(interface="com.a.A", application="x", group="normal", extra={})
    assert "dubbo.tag" not in normal
    dubbo = java_url_encode("dubbo://192.168.1.5:20880/com.a.A?application=p&dubbo.tag=gray&side=provider")
    parsed = parse_provider(dubbo)
    assert (parsed.host, parsed.port, parsed.group) == ("192.168.1.5", 20880, "gray")
    assert parsed.protocol == "dubbo"


@pytest.mark.parametrize("node", ["nonsense", java_url_encode("rest://nohost/com.a.A"), "%3A%2F%2F"])
def test_nodes_that_are_not_urls_are_refused(node: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_provider(node)
