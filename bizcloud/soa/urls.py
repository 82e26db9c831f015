"""Apache Dubbo's ZooKeeper layout, as values: provider URLs, their node names, interface names.

Purely computational, standard library only: the registry writer (in the monitor process) and
the consumer SDK (inside small app images that carry Python and kazoo only) share this module,
so what one writes the other reads byte for byte.

Dubbo's layout (``ZookeeperRegistry.toUrlPath``): a provider of interface ``I`` is the node
``/dubbo/I/providers/<URL.encode(url.toFullString())>`` — the whole provider URL, encoded with
Java's ``URLEncoder`` (UTF-8), as the name of one node. Dubbo consumers list the children of
``providers`` and decode each name back to a URL. BizCloud writes exactly that, with:

- protocol ``rest``: the sample providers speak HTTP/1.1 with JSON bodies, one path per method,
  which is what Dubbo's ``rest`` protocol is (``tri`` is HTTP/2 gRPC-compatible framing, ``dubbo``
  is a binary protocol over TCP: naming either would send a Java consumer into a protocol our
  providers do not speak);
- ``dubbo.tag=gray`` on gray providers: the parameter Dubbo's ``TagStateRouter`` reads
  (``CommonConstants.TAG_KEY``); normal providers carry no tag, as untagged Dubbo providers do;
- ``dynamic=false``: the node is persistent and owned by the registry, not by a provider session
  (Dubbo's meaning of ``dynamic=false``), which is why a ``kill -9`` never leaves a zombie here:
  the registry removes it on DOWN and on every reconcile;
- ``bizcloud.*`` parameters naming the pod, so a DOWN removes exactly that pod's nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote_plus, unquote_plus

ROOT = "/dubbo"
PROTOCOL = "rest"
TAG_PARAM = "dubbo.tag"
GRAY_TAG = "gray"
UID_PARAM = "bizcloud.uid"
# Java identifiers joined by dots: what a Dubbo interface (a Java type's full name) can be.
_JAVA_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$")
MAX_INTERFACE_LENGTH = 200

GroupName = Literal["normal", "gray"]


class InvalidInterfaceError(ValueError):
    """An interface name or annotation the registry refuses; ``reason`` is a metric label."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def java_url_encode(text: str) -> str:
    """``java.net.URLEncoder.encode(text, "UTF-8")``: what Dubbo's ``URL.encode`` does.

    Java keeps ``A-Z a-z 0-9 . - * _`` and turns a space into ``+``; Python's ``quote_plus``
    keeps ``~`` instead of ``*``, hence the two adjustments.
    """
    return quote_plus(text, safe="*").replace("~", "%7E")


def java_url_decode(text: str) -> str:
    return unquote_plus(text)


def validate_interface(name: str) -> str:
    """``name`` if it is a valid Dubbo interface name; raises ``InvalidInterfaceError`` saying why."""
    if not name:
        raise InvalidInterfaceError("empty interface name", reason="empty")
    if len(name) > MAX_INTERFACE_LENGTH:
        raise InvalidInterfaceError(
            f"interface {name[:40]!r}… is longer than {MAX_INTERFACE_LENGTH} characters", reason="too_long")
    if not _JAVA_NAME.match(name):
        raise InvalidInterfaceError(
            f"interface {name!r} is not a Java type name (letters, digits, _ and $, joined by dots, "
            "e.g. com.example.DemoApi)", reason="bad_name")
    return name


def parse_interfaces(annotation: str | None) -> tuple[str, ...]:
    """The interfaces an annotation declares, comma separated; raises ``InvalidInterfaceError``.

    The whole annotation is refused when any part is invalid: half a registration would make a
    typo look like a working service.

    >>> parse_interfaces(" com.example.A, com.example.B ")
    ('com.example.A', 'com.example.B')
    """
    if annotation is None:
        raise InvalidInterfaceError("no bizcloud.io/soa-interfaces annotation", reason="no_annotation")
    names = [part.strip() for part in annotation.split(",")]
    if not any(names):
        raise InvalidInterfaceError("the bizcloud.io/soa-interfaces annotation is empty", reason="empty")
    if "" in names:
        raise InvalidInterfaceError(f"empty entry in {annotation!r} (a stray comma?)", reason="malformed")
    for name in names:
        validate_interface(name)
    if len(set(names)) != len(names):
        raise InvalidInterfaceError(f"an interface is listed twice in {annotation!r}", reason="malformed")
    return tuple(names)


def providers_path(interface: str) -> str:
    return f"{ROOT}/{interface}/providers"


@dataclass(frozen=True)
class Provider:
    """One provider of an interface, as Dubbo's URL says it."""

    host: str
    port: int
    interface: str
    group: GroupName = "normal"
    protocol: str = PROTOCOL
    params: Mapping[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:  # params is a dict: hash what identifies the provider
        return hash(self.url)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Dubbo's ``URL.toFullString()``: parameters in name order, so one provider is one node."""
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.protocol}://{self.host}:{self.port}/{self.interface}?{query}"

    @property
    def node(self) -> str:
        """The ZooKeeper node name: the URL encoded as Dubbo's ``URL.encode`` does."""
        return java_url_encode(self.url)

    @property
    def path(self) -> str:
        return f"{providers_path(self.interface)}/{self.node}"


def provider_params(*, interface: str, application: str, group: GroupName, extra: Mapping[str, str]
                    ) -> dict[str, str]:
    """The parameters BizCloud writes on a provider URL. Purely computational."""
    params = {"anyhost": "false", "application": application, "category": "providers",
              "deprecated": "false", "dubbo": "2.0.2", "dynamic": "false", "generic": "false",
              "interface": interface, "methods": "*", "side": "provider", **extra}
    if group == "gray":
        params[TAG_PARAM] = GRAY_TAG
    return params


def parse_provider(node: str) -> Provider:
    """A provider from its node name (an encoded URL); raises ValueError when it is not one."""
    url = java_url_decode(node)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a URL: {url!r}")
    location, _, query = rest.partition("?")
    hostport, _, path = location.partition("/")
    host, colon, port_text = hostport.rpartition(":")
    if not colon or not host or not port_text.isdigit():
        raise ValueError(f"no host:port in {url!r}")
    params: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        key, _, value = pair.partition("=")
        if key:
            params[key] = value
    interface = params.get("interface") or path
    group: GroupName = "gray" if params.get(TAG_PARAM) == GRAY_TAG else "normal"
    return Provider(host=host, port=int(port_text), interface=interface, group=group, protocol=scheme,
                    params=params)
