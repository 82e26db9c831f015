"""The consumer SDK and the provider helper against a real ZooKeeper.

Providers are written the way the registry writes them (``Provider.path``); the consumer must
follow them through its watch, pick by user group with the gateway's bucket, and the provider
helper must refuse a consumer IP its whitelist does not list — over a real HTTP connection.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from bizcloud.soa.consumer import Consumer, NoProvider, write_gray_policy
from bizcloud.soa.provider import Whitelist
from bizcloud.soa.urls import Provider, provider_params
from bizcloud.soa.whitelist import clear_whitelist, get_whitelist, set_whitelist
from bizcloud.soa.zookeeper import ZooKeeperServer
from bizcloud.usersplit import GrayPolicy, bucket


def provider(interface: str, host: str, group: str = "normal") -> Provider:
    return Provider(host=host, port=8080, interface=interface, group=group,  # type: ignore[arg-type]
                    params=provider_params(interface=interface, application="demo-api",
                                           group=group, extra={"bizcloud.env": "t"}))  # type: ignore[arg-type]


def register(zk: KazooClient, p: Provider) -> None:
    zk.create(p.path, b"", makepath=True)


def until(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def consumer(zk_server: ZooKeeperServer, interface: str) -> Iterator[Consumer]:
    with Consumer(zk_server.hosts, interface, service=f"svc-{interface.split('.')[2]}") as c:
        yield c


def test_the_consumer_follows_providers_and_drops_one_the_moment_its_node_goes(
        zk: KazooClient, consumer: Consumer, interface: str) -> None:
    with pytest.raises(NoProvider, match=f"no normal provider of {interface}"):
        consumer.pick()
    a, b = provider(interface, "10.0.0.1"), provider(interface, "10.0.0.2")
    register(zk, a)
    register(zk, b)
    until(lambda: len(consumer.providers()) == 2, "two providers")
    assert {consumer.pick().host for _ in range(4)} == {"10.0.0.1", "10.0.0.2"}
    latencies = []
    for _ in range(20):
        deleted = time.perf_counter()
        zk.delete(b.path)
        until(lambda: all(p.host != "10.0.0.2" for p in consumer.providers()), "the drop")
        latencies.append(time.perf_counter() - deleted)
        assert {consumer.pick().host for _ in range(10)} == {"10.0.0.1"}
        register(zk, b)
        until(lambda: len(consumer.providers()) == 2, "b back")
    latencies.sort()
    # Watch delivery on loopback; the p99 goal (100 ms) is measured by bench/soa_latency.py.
    assert latencies[len(latencies) // 2] < 0.1, latencies


def test_gray_users_reach_only_gray_providers_and_normal_users_only_normal_ones(
        zk: KazooClient, consumer: Consumer, interface: str) -> None:
    for host, group in (("10.0.1.1", "normal"), ("10.0.1.2", "normal"), ("10.0.2.1", "gray")):
        register(zk, provider(interface, host, group))
    until(lambda: len(consumer.providers()) == 3, "three providers")
    users = [f"user-{i}" for i in range(400)]
    assert {consumer.pick(u).group for u in users} == {"normal"}  # no policy node: ratio 0
    assert consumer.service is not None
    write_gray_policy(zk, consumer.service, GrayPolicy(ratio=30, whitelist=frozenset({"vip"})))
    until(lambda: consumer.policy.ratio == 30, "the policy")
    for user in users:
        chosen = consumer.pick(user)
        gray = bucket(user) < 3000
        assert chosen.group == ("gray" if gray else "normal")
        assert chosen.host.startswith("10.0.2." if gray else "10.0.1.")
    assert consumer.pick("vip").group == "gray"
    assert consumer.pick(None).group == "normal"  # anonymous users never land on gray


def test_an_empty_group_falls_back_to_the_other_unless_the_policy_forbids_it(
        zk: KazooClient, consumer: Consumer, interface: str) -> None:
    assert consumer.service is not None
    register(zk, provider(interface, "10.0.1.1", "normal"))
    write_gray_policy(zk, consumer.service, GrayPolicy(ratio=100))
    until(lambda: consumer.policy.ratio == 100 and consumer.providers(), "policy and provider")
    assert consumer.pick("someone").host == "10.0.1.1"
    assert consumer.fallbacks == 1
    write_gray_policy(zk, consumer.service, GrayPolicy(ratio=100, fallback=False))
    until(lambda: not consumer.policy.fallback, "no-fallback policy")
    with pytest.raises(NoProvider, match="no gray provider"):
        consumer.pick("someone")


def test_a_consumer_of_one_environment_ignores_the_others(
        zk: KazooClient, zk_server: ZooKeeperServer, interface: str) -> None:
    register(zk, provider(interface, "10.0.0.1"))  # bizcloud.env=t
    other = provider(interface, "10.0.0.2")
    register(zk, Provider(host=other.host, port=other.port, interface=interface,
                          params={**other.params, "bizcloud.env": "prod"}))
    foreign = "dubbo%3A%2F%2F10.0.0.3%3A20880%2F" + interface + "%3Fside%3Dprovider"
    zk.create(f"/dubbo/{interface}/providers/{foreign}", b"")
    with Consumer(zk_server.hosts, interface, env="t") as consumer:
        until(lambda: len(consumer.providers()) == 2, "the providers")
        assert sorted(p.host for p in consumer.providers()) == ["10.0.0.1", "10.0.0.3"]


def test_mark_failed_keeps_a_provider_out_for_a_while(
        zk: KazooClient, consumer: Consumer, interface: str) -> None:
    a, b = provider(interface, "10.0.0.1"), provider(interface, "10.0.0.2")
    register(zk, a)
    register(zk, b)
    until(lambda: len(consumer.providers()) == 2, "two providers")
    consumer.mark_failed(next(p for p in consumer.providers() if p.host == "10.0.0.2"))
    assert {consumer.pick().host for _ in range(10)} == {"10.0.0.1"}


class _Api(http.server.BaseHTTPRequestHandler):
    whitelist: Whitelist

    def do_GET(self) -> None:
        if not self.whitelist.allows(self.client_address[0]):
            self.send_error(403, "not whitelisted")
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args: object) -> None:
        pass


def test_the_provider_helper_refuses_consumers_off_the_whitelist(
        zk: KazooClient, zk_server: ZooKeeperServer, interface: str) -> None:
    with Whitelist(zk_server.hosts, interface) as whitelist:
        handler = type("Api", (_Api,), {"whitelist": whitelist})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        def call() -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("GET", "/")
            status = conn.getresponse().status
            conn.close()
            return status

        try:
            assert whitelist.allowed is None and call() == 200  # no rule: open
            set_whitelist(zk, interface, ["10.88.0.9"])
            until(lambda: whitelist.allowed == {"10.88.0.9"}, "the rule")
            assert call() == 403
            assert whitelist.refused == 1
            set_whitelist(zk, interface, ["10.88.0.9", "127.0.0.1"])
            until(lambda: whitelist.allowed == {"10.88.0.9", "127.0.0.1"}, "the wider rule")
            assert call() == 200
            assert get_whitelist(zk, interface) == {"10.88.0.9", "127.0.0.1"}
            assert len(zk.get_children(f"/dubbo/{interface}/routers")) == 1  # the legacy rule, replaced
            set_whitelist(zk, interface, [])
            until(lambda: whitelist.allowed == frozenset(), "the closed rule")
            assert call() == 403
            clear_whitelist(zk, interface)
            until(lambda: whitelist.allowed is None, "no rule")
            assert call() == 200
            assert zk.get_children(f"/dubbo/{interface}/routers") == []
        finally:
            server.shutdown()
