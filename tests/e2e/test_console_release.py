"""Deploy and scale from the console, end to end: Chromium → the service page → the release API →
the real cluster.

The module runs its own `bizcloud server` (own database, state directory and port 18930) whose
config center holds the sample configs with parameters for an environment of its own
(``cr-<hex>``, namespace ``bc-cr-<hex>``, one replica), so nothing it deploys touches ``bc-dev``
or the environments other tests use. The catalog says developer ``dev`` owns ``demo-web``; ``vera``
is a viewer. The namespace the deploy creates is deleted at the end.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bizcloud import stack
from bizcloud.accounts.roles import Role
from bizcloud.catalog.db import make_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube.kubectl import Kubectl
from bizcloud.release.store import ReleaseStore
from bizcloud.settings import Settings
from tests.e2e.conftest import wait_for
from tests.e2e.console_fixtures import browser, create_users, login, own_stack

__all__ = ["browser"]  # the shared Chromium fixture

pytestmark = pytest.mark.e2e

SERVER_PORT, METRICS_PORT = 18930, 18931
ENV = f"cr-{uuid.uuid4().hex[:5]}"
NAMESPACE = f"bc-{ENV}"
SERVICE = "demo-web"
DEV_LINE = "  dev: {replicas: 2, cpu: 20m, memory: 96Mi}\n"


@dataclass
class Console:
    url: str
    db_url: str
    tokens: dict[str, str]


def _configs_with_own_environment() -> str:
    """The sample configs, demo-web with parameters for this module's environment: one replica."""
    text = stack.SAMPLE_CONFIGS.read_text()
    assert DEV_LINE in text, "the sample configs changed: update DEV_LINE"
    return text.replace(DEV_LINE, DEV_LINE + f"  {ENV}: {{replicas: 1, cpu: 20m, memory: 96Mi}}\n", 1)


@pytest.fixture(scope="module")
def console(real_cluster: Settings, kubectl: Kubectl, sample_image: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console-release")
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    tokens = create_users(db_url, {"olga": Role.OPS, "dev": Role.DEVELOPER, "vera": Role.VIEWER})
    engine = make_engine(db_url)
    configs = ConfigStore(engine)
    inventory = stack.SAMPLE_INVENTORY.read_text().replace(stack.NODE_IP_PLACEHOLDER, "192.0.2.2")
    configs.apply(inventory, author="test")
    configs.apply(_configs_with_own_environment(), author="test")
    CatalogStore(engine).create_service(name=SERVICE, owner="dev", description="the sample, owned by dev")
    engine.dispose()
    try:
        with own_stack(real_cluster, tmp, db_url=db_url, server_port=SERVER_PORT, metrics_port=METRICS_PORT,
                       lease=f"e2e-{ENV}", monitor=False):
            yield Console(url=f"http://127.0.0.1:{SERVER_PORT}", db_url=db_url, tokens=tokens)
    finally:
        kubectl.run("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


def _section(page: Any, env: str = ENV) -> Any:
    return page.locator(f"section.release[data-env='{env}']")


def _service_page(browser: Any, console: Console, user: str) -> Any:
    page = browser.new_page()
    login(page, console.url, user)
    page.goto(f"{console.url}/console/services/{SERVICE}")
    return page


def _deployment(kubectl: Kubectl) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.get_json("deployment", SERVICE, "-n", NAMESPACE)
    return found


def _replicas(kubectl: Kubectl) -> int:
    return int(_deployment(kubectl)["spec"]["replicas"])


def test_an_owner_deploys_from_the_console_and_sees_progress_and_result(browser: Any, console: Console,
                                                                        kubectl: Kubectl) -> None:
    page = _service_page(browser, console, "dev")
    section = _section(page)
    deploy = section.locator("button[name=deploy]")
    assert deploy.is_enabled()
    assert deploy.get_attribute("title") == f"dev owns {SERVICE}; {ENV} is not production"
    deploy.click()
    outcome = section.locator(".outcome")
    outcome.filter(has_text="deployed").wait_for(timeout=240_000)
    assert section.locator(".error").inner_text() == ""
    result = (rf"deployed demo:v1 \(release v1\) to {NAMESPACE}: [1-9]\d* of \d+ objects changed; "
              rf"{SERVICE} complete, {SERVICE}-gray complete")
    assert re.match(result, outcome.inner_text()), outcome.inner_text()
    progress = section.locator(".progress").inner_text().splitlines()
    assert progress[0] == f"rendering {SERVICE} for {ENV}" and "waiting for the rollout" in progress
    assert any(re.match(rf"{SERVICE}: \d+/1 updated, \d+ ready", line) for line in progress), progress
    # The history, refreshed in place, has the deploy by dev; the cluster has the Deployment.
    page.locator("#history tr", has_text="dev").filter(has_text="deploy").first.wait_for(timeout=10_000)
    assert _replicas(kubectl) == 1
    page.close()


def test_dry_run_shows_the_diff_and_changes_nothing(browser: Any, console: Console, kubectl: Kubectl) -> None:
    before = _deployment(kubectl)["metadata"]["resourceVersion"]
    page = _service_page(browser, console, "dev")
    section = _section(page)
    section.locator("input[name=image]").fill("demo:v9")
    section.locator("button[name=dry-run]").click()
    section.locator(".outcome", has_text="dry run of demo:v9").wait_for(timeout=60_000)
    assert "objects would change" in section.locator(".outcome").inner_text()
    diff = section.locator(".progress").inner_text()
    assert f"# Deployment {NAMESPACE}/{SERVICE} (update)" in diff and "+        image: demo:v9" in diff
    after = _deployment(kubectl)["metadata"]["resourceVersion"]
    assert after == before
    page.close()


def test_scale_to_two_replicas_from_the_console(browser: Any, console: Console, kubectl: Kubectl) -> None:
    page = _service_page(browser, console, "dev")
    section = _section(page)
    section.locator("input[name=replicas]").fill("2")
    section.locator("button[name=scale]").click()
    section.locator(".outcome", has_text="scaled").wait_for(timeout=240_000)
    said = section.locator(".outcome").inner_text()
    assert said == f"scaled {SERVICE} in {ENV}: replicas 1 → 2 (no pod restarted)", said
    assert _replicas(kubectl) == 2
    wait_for(lambda: _deployment(kubectl)["status"].get("readyReplicas") == 2, timeout=120,
             what="two ready replicas")
    page.close()


def test_a_running_operation_is_shown_as_the_apis_409(browser: Any, console: Console) -> None:
    engine = make_engine(console.db_url)
    try:
        with ReleaseStore(engine).operation(SERVICE, ENV, "deploy", "someone-else"):
            page = _service_page(browser, console, "dev")
            section = _section(page)
            section.locator("input[name=replicas]").fill("3")
            section.locator("button[name=scale]").click()
            error = section.locator(".error")
            error.filter(has_text="someone-else").wait_for(timeout=30_000)
            assert section.locator(".outcome").inner_text() == ""
            page.close()
    finally:
        engine.dispose()


def test_a_viewer_sees_no_enabled_button_and_the_api_answers_403(browser: Any, console: Console) -> None:
    page = _service_page(browser, console, "vera")
    buttons = page.locator("section.release button")
    assert buttons.count() >= 3
    for i in range(buttons.count()):
        button = buttons.nth(i)
        assert button.is_disabled() and button.get_attribute("title") == "a viewer may only read"
    page.close()
    refused = httpx.post(f"{console.url}/api/v1/release/{SERVICE}/{ENV}/deploy", json={}, timeout=30,
                         headers={"Authorization": f"Bearer {console.tokens['vera']}"})
    assert refused.status_code == 403 and refused.json()["detail"] == "a viewer may only read"
