"""Random walks through the gray state machine, its actions run on a model of the two Deployments.

The model keeps, per group, the replicas asked for, the Ready pods and the image; ``WaitReady``
makes the asked pods Ready, a scale-down removes pods at once, a new image rolls without losing
Ready pods (a rolling update). Checked after every action of
every batch: users are only ever sent to a group that has Ready pods for its share of them
(capacity before traffic), except in a rollback, which moves users off gray first and relies on
the gateway's fallback for the moment the normal group is short. Checked after every batch: the
Deployments and the traffic are what the state says.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bizcloud.release.analysis import Outcome, Verdict
from bizcloud.release.gray_plan import (
    Action,
    Analyse,
    GrayError,
    GrayState,
    Observations,
    Phase,
    Record,
    ScaleGroup,
    SetNormalImage,
    SetTraffic,
    WaitReady,
    pause,
    pods_for,
    promote,
    resume,
    rollback,
    set_ratio,
    start,
    tick,
)
from bizcloud.usersplit import GrayPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Cluster:
    replicas: dict[str, int] = field(default_factory=lambda: {"normal": 0, "gray": 0})
    ready: dict[str, int] = field(default_factory=lambda: {"normal": 0, "gray": 0})
    image: dict[str, str] = field(default_factory=lambda: {"normal": "shop:v1", "gray": ""})
    policy: GrayPolicy = field(default_factory=GrayPolicy)

    def run(self, actions: list[Action], *, total: int, rolling_back: bool) -> bool:
        analysed = False
        for action in actions:
            if isinstance(action, ScaleGroup):
                if action.image:
                    self.image[action.group] = action.image
                self.replicas[action.group] = action.replicas
                self.ready[action.group] = min(self.ready[action.group], action.replicas)
            elif isinstance(action, WaitReady):
                assert self.replicas[action.group] >= action.replicas
                self.ready[action.group] = self.replicas[action.group]
            elif isinstance(action, SetNormalImage):
                self.image["normal"] = action.image   # a rolling update: keeps its Ready pods as it goes
            elif isinstance(action, SetTraffic):
                self.policy = action.policy
            elif isinstance(action, Analyse):
                analysed = True
            else:
                assert isinstance(action, Record)
            if not rolling_back:
                self.check_capacity(total)
        return analysed

    def check_capacity(self, total: int) -> None:
        need = pods_for(total, self.policy.ratio, self.policy.whitelist)
        assert self.ready["gray"] >= need.gray, (self, need)
        assert self.ready["normal"] >= need.normal, (self, need)


def _apply(state: GrayState, cluster: Cluster, plan: tuple[GrayState, list[Action]]) -> GrayState:
    new, actions = plan
    cluster.run(actions, total=state.replicas, rolling_back=new.phase is Phase.ROLLING_BACK)
    return new


def _check_matches(state: GrayState, cluster: Cluster) -> None:
    if state.phase in (Phase.RUNNING, Phase.PAUSED):
        pods = state.split()
        assert (cluster.ready["gray"], cluster.ready["normal"]) == (pods.gray, pods.normal)
        assert cluster.policy == state.policy()
        assert cluster.image["normal"] == state.base_image
        if pods.gray:
            assert cluster.image["gray"] == state.image
    if state.phase in (Phase.PROMOTED, Phase.ROLLED_BACK):
        assert cluster.replicas == {"normal": state.replicas, "gray": 0}
        assert cluster.ready["normal"] == state.replicas and cluster.policy.ratio == 0
        want = state.image if state.phase is Phase.PROMOTED else state.base_image
        assert cluster.image["normal"] == want


def _walk(seed: int) -> list[str]:
    rng = random.Random(seed)
    total = rng.choice([1, 2, 3, 5, 10, 17])
    cluster = Cluster(replicas={"normal": total, "gray": 0}, ready={"normal": total, "gray": 0})
    now = T0
    steps = tuple(sorted(rng.sample([5, 10, 20, 30, 50, 75, 100], k=rng.randint(1, 4))))
    if steps[0] == 100:
        steps = (10, 100)
    state, actions = start(None, service="shop", env="dev", image="shop:v2", release="v2",
                           base_image="shop:v1", base_release="v1", replicas=total, now=now, user="ops",
                           steps=steps, interval_s=30)
    cluster.run(actions, total=total, rolling_back=False)
    _check_matches(state, cluster)
    seen: list[str] = []
    moves: dict[str, Callable[[GrayState, datetime], tuple[GrayState, list[Action]]]] = {
        "set": lambda s, t: set_ratio(s, ratio=rng.choice([0, 1, 10, 33.3, 50, 90, 100]), now=t,
                                      whitelist=rng.choice([None, frozenset({"qa"})])),
        "pause": lambda s, t: pause(s, now=t),
        "resume": lambda s, t: resume(s, now=t),
        "promote": lambda s, t: promote(s, now=t),
        "rollback": lambda s, t: rollback(s, now=t),
    }
    for _ in range(40):
        now += timedelta(seconds=rng.choice([5, 30, 31, 90]))
        if rng.random() < 0.3:
            name = rng.choice(sorted(moves))
            try:
                state = _apply(state, cluster, moves[name](state, now))
            except GrayError:
                seen.append(f"refused {name}")
                continue
            seen.append(name)
        else:
            outcome = rng.choice([Outcome.OK, Outcome.OK, Outcome.OK, Outcome.INCONCLUSIVE, Outcome.FAIL])
            observed = Observations(completed=True, verdict=Verdict(outcome, outcome.value))
            state = _apply(state, cluster, tick(state, now=now, seen=observed))
            seen.append(f"tick {outcome.value}")
        if state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
            state = _apply(state, cluster, tick(state, now=now, seen=Observations(completed=True)))
        _check_matches(state, cluster)
        if state.phase in (Phase.PROMOTED, Phase.ROLLED_BACK):
            seen.append(state.phase.value)
            break
    return seen


@pytest.mark.parametrize("seed", range(300))
def test_random_walks_keep_capacity_before_traffic_and_end_where_the_state_says(seed: int) -> None:
    assert _walk(seed)
