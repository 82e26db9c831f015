"""Reading uploads: every refusal names its field (or its line), and the canonical form ignores noise."""

from __future__ import annotations

import pytest

from bizcloud.configcenter import documents
from bizcloud.configcenter.errors import ConfigError
from tests.configcenter.conftest import DEMO_API, DEMO_WEB, INVENTORY


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        documents.read(text)
    return caught.value.problems


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("name: a\ncolour: blue\n", "colour: unknown key", id="unknown-top-key"),
    pytest.param("name: a\ndependencies: {mysql: [{cluster: local, database: d, user: u, "
                 "privileges: [SELECT], host: x}]}\n", "dependencies.mysql[0].host: unknown key",
                 id="unknown-nested-key"),
    pytest.param("name: Demo_Web\n", "name: 'Demo_Web' is not valid — use a DNS label",
                 id="bad-service-name"),
    pytest.param("name: a\ndependencies: {mysql: [{cluster: local, database: demo, user: \"x;drop\", "
                 "privileges: [SELECT]}]}\n",
                 "dependencies.mysql[0].user: 'x;drop' is not valid — use letters", id="sql-injection-user"),
    pytest.param("name: a\ndependencies: {mysql: [{cluster: local, database: \"demo`; DROP\", user: u, "
                 "privileges: [SELECT]}]}\n",
                 "dependencies.mysql[0].database: 'demo`; DROP' is not valid", id="sql-injection-database"),
    pytest.param("name: a\ndependencies: {mysql: [{cluster: local, database: d, user: u, "
                 "privileges: [ALL]}]}\n",
                 "dependencies.mysql[0].privileges: 'ALL' is not valid — name database",
                 id="all-privileges"),
    pytest.param("name: a\ndependencies: {mysql: [{cluster: local, database: d, user: u, "
                 "privileges: SELECT}]}\n", "dependencies.mysql[0].privileges: give privileges as a list",
                 id="privileges-not-a-list"),
    pytest.param("name: a\ndependencies: {soa: [{interfaces: [\"a/../../zookeeper\"]}]}\n",
                 "dependencies.soa[0].interfaces[0]: 'a/../../zookeeper' is not valid — give a Java type",
                 id="zk-path-interface"),
    pytest.param("name: a\ndependencies: {tcp: [{host: \"h -j ACCEPT\", port: 80}]}\n",
                 "dependencies.tcp[0].host: 'h -j ACCEPT' is not valid", id="iptables-injection-host"),
    pytest.param("name: a\nports: {http: 70000}\n", "ports.http: 70000 is not valid — give a TCP port",
                 id="bad-port"),
    pytest.param("name: a\nports: {HTTP: 80}\n", "ports.HTTP: the key 'HTTP'", id="bad-port-name"),
    pytest.param("dependencies: {}\n", "name: required", id="missing-name"),
    pytest.param("kind: Deployment\nname: a\n", "kind: 'Deployment' is not known — use Service or Inventory",
                 id="unknown-kind"),
    pytest.param("name: inventory\n", "name: 'inventory' is reserved", id="reserved-name"),
    pytest.param("name: a\nresources: {dev: {env: {DB_PASSWORD: hunter2}}}\n",
                 "resources.dev.env.DB_PASSWORD: looks like a secret", id="secret-in-env"),
    pytest.param("kind: Inventory\nmysql: {local: {master: {host: \"db;rm\"}, "
                 "admin: {namespace: s, name: a}}}\n",
                 "mysql.local.master.host: 'db;rm' is not valid", id="inventory-bad-host"),
    pytest.param("kind: Inventory\nredis: {c: {host: nowhere}}\n",
                 "redis.c.host: 'nowhere' is not under hosts",
                 id="inventory-redis-host"),
    pytest.param("kind: Inventory\nhosts: {h: {address: 10.0.0.1, ports: [22], backend: telnet}}\n",
                 "hosts.h.backend: Input should be 'local', 'ssh' or 'salt'", id="inventory-backend"),
    pytest.param("- name: a\n", "(document): expected a mapping", id="not-a-mapping"),
])
def test_each_refusal_names_its_field(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(("text", "line"), [
    pytest.param("name: a\nports: {http: 80\n", "line 3", id="unclosed-flow"),
    pytest.param("name: a\n  bad: indent\n", "line 2", id="bad-indent"),
    pytest.param("name: a\nports: {}\nname: b\n", "line 3, column 1: the key 'name' is given twice",
                 id="dup-key"),
    pytest.param("name: &n a\nports: {x: *n}\n", "line 2", id="alias"),
])
def test_yaml_errors_name_the_line(text: str, line: str) -> None:
    [found] = problems(text)
    assert found.startswith(line), found


def test_several_documents_say_which_one_is_wrong() -> None:
    found = problems(DEMO_API + "---\nname: second\nports: {http: 0}\n---\n" + DEMO_API)
    assert "document 2 (second): ports.http: 0 is not valid — give a TCP port between 1 and 65535" in found
    assert "name: 'demo-api' appears in more than one document; give each config once" in found


def test_empty_upload_is_refused() -> None:
    expected = "the text is empty: give a kind: Service or kind: Inventory document"
    assert problems("# nothing\n---\n") == [expected]


def test_documents_keep_their_own_text_and_kind() -> None:
    docs = documents.read("# the sample\n" + INVENTORY + "---\n" + DEMO_API + "--- # web\n" + DEMO_WEB)
    assert [(d.kind, d.name) for d in docs] == [("Inventory", "inventory"), ("Service", "demo-api"),
                                                ("Service", "demo-web")]
    assert docs[0].text.startswith("# the sample\nkind: Inventory")
    assert docs[1].text == DEMO_API
    assert docs[2].text.strip().endswith("port: 9000")


def test_canonical_form_ignores_order_case_defaults_and_comments() -> None:
    a = documents.read(DEMO_API)[0]
    b = documents.read("""\
# same thing, written differently
dependencies:
  mysql:
    - {roles: [slaves, master], privileges: [insert, select, SELECT], user: demo_api, database: demo,
       cluster: local}
ports: {soa: 20880}
type: stateless
kind: Service
name: demo-api
""")[0]
    assert a.canonical == b.canonical
    assert '"privileges":["INSERT","SELECT"]' in a.canonical and '"roles":["master","slaves"]' in a.canonical
    assert documents.canonical_yaml(a.canonical).startswith("kind: Service\nname: demo-api\n")


@pytest.mark.parametrize(("loc", "path"), [
    (("dependencies", "mysql", 0, "user"), "dependencies.mysql[0].user"),
    (("resources", "dev", "env", "A_B"), "resources.dev.env.A_B"),
    (("ports", "a b"), 'ports["a b"]'),
    ((), ""),
])
def test_locations_read_like_paths(loc: tuple[int | str, ...], path: str) -> None:
    assert documents.location(loc) == path
