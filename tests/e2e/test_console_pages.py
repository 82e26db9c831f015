"""The console's config, graph, grants and users pages in Chromium, on real data from real components.

The module runs its own server and monitor (``own_stack``, ports 18940/18941) and its own ZooKeeper
(22183), so the monitor's authorization worker grants SOA whitelist entries for real. A sample
service of its own consumes an interface; its config is applied through the API twice (v1, v2),
and the pages must show the versions, the diff, the graph with links, and each pod's grant with
its reason as the worker wrote it. Viewers read every page and get no controls; the last admin
cannot demote themself from the users page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from bizcloud.accounts.roles import Role
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.soa.zookeeper import ZooKeeperServer
from tests.e2e.conftest import demo_deployment, ready_pods, wait_for
from tests.e2e.console_fixtures import browser, create_users, login, own_stack

__all__ = ["browser"]  # the shared Chromium fixture

pytestmark = pytest.mark.e2e

SERVER_PORT, METRICS_PORT, ZK_PORT = 18940, 18941, 22183


@dataclass
class Pages:
    url: str
    service: str
    interface: str
    ips: list[str]
    pods: list[str]


def _config(service: str, interfaces: list[str]) -> str:
    return yaml.safe_dump({"kind": "Service", "name": service,
                           "dependencies": {"soa": [{"interfaces": interfaces}]}})


@pytest.fixture(scope="module")
def pages(real_cluster: Settings, kubectl: Kubectl, namespace: str, sample_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    tmp = tmp_path_factory.mktemp("pages")
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    suffix = uuid.uuid4().hex[:6]
    service, interface = f"pages-{suffix}", f"io.bizcloud.e2e.Pages{suffix}"
    tokens = create_users(db_url, {"root": Role.ADMIN, "olga": Role.OPS, "vera": Role.VIEWER})
    zk = ZooKeeperServer(root=tmp / "zk", port=ZK_PORT)
    zookeeper.start(zk)
    try:
        with own_stack(real_cluster, tmp, db_url=db_url, server_port=SERVER_PORT, metrics_port=METRICS_PORT,
                       lease=f"e2e-pages-{suffix}", extra_env={"BIZCLOUD_ZOOKEEPER_HOSTS": zk.hosts}):
            url = f"http://127.0.0.1:{SERVER_PORT}"
            headers = {"Authorization": f"Bearer {tokens['olga']}", "Content-Type": "text/yaml"}
            for interfaces in ([interface], [interface, interface + "Two"]):
                applied = httpx.put(f"{url}/api/v1/configs", content=_config(service, interfaces),
                                    headers=headers, timeout=30)
                assert applied.status_code == 200, applied.text
            kubectl.apply(demo_deployment(name=service, namespace=namespace, image=sample_image, replicas=1))
            try:
                wait_for(lambda: len(ready_pods(kubectl, namespace, f"app={service}")) == 1, timeout=120,
                         what="a ready sample pod")
                found = ready_pods(kubectl, namespace, f"app={service}")
                ips = [p["status"]["podIP"] for p in found]

                def granted() -> bool:
                    rows = httpx.get(f"{url}/api/v1/grants", params={"service": service}, timeout=10).json()
                    states = {(r["subject_ip"], r["state"]) for r in rows}
                    return states == {(ips[0], "applied")} and len(rows) == 2
                wait_for(granted, timeout=60, what="the worker's SOA grants for the pod")
                yield Pages(url=url, service=service, interface=interface, ips=ips,
                            pods=[p["metadata"]["name"] for p in found])
            finally:
                kubectl.run("delete", "deployment", service, "-n", namespace, "--wait=false", check=False)
    finally:
        zookeeper.stop(zk)


def test_config_pages_show_versions_yaml_and_any_diff(browser: Any, pages: Pages) -> None:
    page = browser.new_page()
    login(page, pages.url, "olga")
    page.click("nav >> text=Configs")
    row = page.locator(f"tr.config[data-name='{pages.service}']")
    assert "v2" in row.inner_text() and "olga" in row.inner_text()
    row.locator("a").click()
    assert pages.interface + "Two" in page.locator("#yaml").inner_text()
    assert page.locator("tr.version").count() == 2
    assert any(f"{pages.interface}Two" in t for t in page.locator("#diff .add").all_inner_texts())
    # Any two versions: from v2 back to v1 shows the line removed.
    page.check("tr.version[data-version='2'] input[name=old]")
    page.check("tr.version[data-version='1'] input[name=new]")
    page.click("#diff-form button[type=submit]")
    assert "Diff v2 → v1" in page.locator("#diff-title").inner_text()
    assert any(f"{pages.interface}Two" in t for t in page.locator("#diff .del").all_inner_texts())
    page.close()


def test_service_page_graph_and_grants_with_reasons(browser: Any, pages: Pages) -> None:
    page = browser.new_page()
    login(page, pages.url, "vera")  # a viewer reads everything
    page.goto(f"{pages.url}/console/services/{pages.service}")
    assert page.locator("#graph svg").count() == 1
    assert pages.interface in page.locator("#graph").inner_text()
    grant = page.locator(f"tr.grant[data-ip='{pages.ips[0]}']").first
    text = grant.inner_text()
    assert "soa" in text and "applied" in text and pages.pods[0] in text and "config v2" in text
    assert "dependencies.soa[0]" in text
    # The whole platform's graph: the service node links to its page.
    page.click("nav >> text=Graph")
    page.locator(f"#graph a[*|href='/console/services/{pages.service}']").click()
    page.wait_for_url(f"{pages.url}/console/services/{pages.service}")
    # The grants page, filtered by ip, then a bad ip: a clear error naming the field.
    page.goto(f"{pages.url}/console/grants?ip={pages.ips[0]}")
    assert page.locator("tr.grant").count() == 2
    assert page.locator(f"tr.journal-entry[data-action='grant'][data-ip='{pages.ips[0]}']").count() >= 2
    page.goto(f"{pages.url}/console/grants?ip=not-an-ip")
    assert "ip" in page.locator("#problem").inner_text()
    # No controls for a viewer: no users link, the users page refuses.
    assert page.locator("nav >> text=Users").count() == 0
    page.goto(f"{pages.url}/console/users")
    assert "only an admin manages users" in page.locator("#problem").inner_text()
    page.close()


def test_users_page_adds_a_user_changes_a_role_issues_a_token_and_keeps_the_last_admin(
        browser: Any, pages: Pages) -> None:
    page = browser.new_page()
    login(page, pages.url, "root")
    page.click("nav >> text=Users")
    page.fill("#add-user input[name=name]", "newbie")
    page.select_option("#add-user select[name=role]", "viewer")
    page.click("#add-user button[type=submit]")
    page.wait_for_selector("tr.user[data-name='newbie']")
    assert "password (shown once)" in page.locator("#users-secret").inner_text()
    row = page.locator("tr.user[data-name='newbie']")
    row.locator("select.role").select_option("developer")
    row.locator("button.set-role").click()
    page.wait_for_selector("tr.user[data-name='newbie'][data-role='developer']")
    page.locator("tr.user[data-name='newbie'] button.issue-token").click()
    page.wait_for_function("() => document.getElementById('users-secret').textContent.includes('bct_')")
    me = page.locator("tr.user[data-name='root']")
    me.locator("select.role").select_option("ops")
    me.locator("button.set-role").click()
    page.wait_for_function("() => document.getElementById('users-error').textContent.length > 0")
    assert "last enabled admin" in page.locator("#users-error").inner_text()
    page.reload()
    assert page.locator("tr.user[data-name='root']").get_attribute("data-role") == "admin"
    page.close()
