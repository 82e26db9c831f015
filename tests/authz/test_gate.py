"""When a gated pod's readiness gate opens, by table: the plan x what each target holds -> the condition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bizcloud.authz.gate import gate_condition, needs_by_pod
from bizcloud.authz.grants import Kind
from bizcloud.authz.planner import Desired, desired
from bizcloud.kube.conditions import PodCondition
from bizcloud.monitor.instances import AUTHORIZED_GATE
from bizcloud.monitor.model import Instance
from tests.authz.test_planner import INVENTORY, ORDERS_RW, config, pod

API = pod("api", "10.88.0.5", ready=False)
OTHER = pod("api", "10.88.0.6", ready=False)
MASTER, SLAVE = (Kind.MYSQL, "orders/10.1.0.1:3306"), (Kind.MYSQL, "orders/10.1.0.2:3306")
SLAVE2 = (Kind.MYSQL, "orders/10.1.0.3:3307")
ALL = (MASTER, SLAVE, SLAVE2)


def plan_for(*instances: Instance, env_only: str | None = None) -> Desired:
    mysql = {**ORDERS_RW, "cluster": "prod-db", "roles": ["master"]} if env_only else ORDERS_RW
    return desired({"api": config("api", mysql=[mysql])}, INVENTORY, instances)


def condition(instance: Instance, plan: Desired, *, done: tuple[tuple[Kind, str], ...] = (),
              failing: tuple[tuple[Kind, str], ...] = (), kinds: tuple[Kind, ...] = tuple(Kind),
              ) -> PodCondition | None:
    held = {key: plan.plans[key] for key in done}
    return gate_condition(instance, plan, needs_by_pod(plan).get(instance.uid, {}), done=held,
                          failing=dict.fromkeys(failing, 1), kinds=kinds)


def test_open_once_every_target_holds_the_pods_grants() -> None:
    plan = plan_for(API)
    assert condition(API, plan, done=ALL) == PodCondition(AUTHORIZED_GATE, True, "GrantsInPlace",
                                                          "3 grants in place")


@pytest.mark.parametrize("done", [(), (MASTER,), (MASTER, SLAVE)])
def test_undecided_while_a_target_is_still_converging(done: tuple[tuple[Kind, str], ...]) -> None:
    assert condition(API, plan_for(API), done=done) is None


def test_another_pods_grants_do_not_hold_it_back() -> None:
    """The target last converged for API alone; OTHER arrived since: API is still fully granted."""
    held_for_api = plan_for(API)
    both = plan_for(API, OTHER)
    done = {key: held_for_api.plans[key] for key in ALL}
    needs = needs_by_pod(both)
    kinds = tuple(Kind)
    assert gate_condition(API, both, needs[API.uid], done=done, failing={}, kinds=kinds) is not None
    assert gate_condition(OTHER, both, needs[OTHER.uid], done=done, failing={}, kinds=kinds) is None


def test_a_failing_target_holds_it_with_the_target_named() -> None:
    got = condition(API, plan_for(API), done=(MASTER, SLAVE), failing=(SLAVE2,))
    assert got is not None and (got.status, got.reason) == (False, "GrantFailing")
    assert "mysql orders/10.1.0.3:3307" in got.message and "bizcloud grants" in got.message


def test_a_refused_grant_does_not_hold_it_but_is_named() -> None:
    """A refusal is the config's decision and will not change by waiting: open, and say it."""
    plan = plan_for(API, env_only="prod")
    got = condition(API, plan)
    assert got is not None and (got.status, got.reason) == (True, "GrantsInPlace")
    assert got.message.startswith("0 grants in place; refused: mysql[0]:") and "prod" in got.message


def test_kinds_this_process_cannot_converge_are_not_waited_for() -> None:
    """No ZooKeeper configured: no SOA executor, so SOA grants cannot hold the gate shut."""
    plan = desired({"web": config("web", soa=[{"interfaces": ["a.A"]}])}, INVENTORY,
                   [replace(API, service="web")])
    web = replace(API, service="web")
    assert condition(web, plan, kinds=(Kind.MYSQL, Kind.TCP)) == PodCondition(
        AUTHORIZED_GATE, True, "GrantsInPlace", "0 grants in place")
    assert condition(web, plan) is None


def test_a_pod_with_nothing_to_grant_opens_at_once() -> None:
    plan = desired({"api": config("api")}, INVENTORY, [API])
    assert condition(API, plan) == PodCondition(AUTHORIZED_GATE, True, "GrantsInPlace", "0 grants in place")


def test_a_service_without_config_here_is_not_ours_to_let_in() -> None:
    """Another BizCloud's pod on a shared cluster, or a hand-made manifest: no decision."""
    assert condition(API, desired({}, INVENTORY, [API])) is None


def test_a_pod_newer_than_the_plan_is_not_judged_by_it() -> None:
    """The plan was made before the pod had its IP: it holds no grant for it, which proves nothing."""
    assert condition(OTHER, plan_for(API), done=ALL) is None
    assert condition(API, Desired(), done=()) is None


def test_messages_stay_short_enough_for_a_condition() -> None:
    plan = plan_for(API, env_only="prod")
    plan.refusals[:] = [replace(plan.refusals[0], message="x" * 2000)]
    got = condition(API, plan)
    assert got is not None and len(got.message) == 512
