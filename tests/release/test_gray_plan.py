"""The gray state machine: every transition's state and actions, every illegal one refused unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Outcome, Thresholds, Verdict
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
    converge,
    pause,
    pods_for,
    promote,
    resume,
    rollback,
    set_ratio,
    start,
    tick,
)
from bizcloud.release.replicas import Split
from bizcloud.usersplit import GrayPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OK = Verdict(Outcome.OK, "gray: error rate 0.00%")
FAIL = Verdict(Outcome.FAIL, "gray: error rate 50.00% over the 1.00% allowed")
MAYBE = Verdict(Outcome.INCONCLUSIVE, "gray: only 3 requests")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def begin(**kw: Any) -> tuple[GrayState, list[Action]]:
    args: dict[str, Any] = {"service": "shop", "env": "dev", "image": "shop:v2", "release": "v2",
                            "base_image": "shop:v1", "base_release": "v1", "replicas": 10, "now": T0,
                            "user": "ops", "steps": (10, 30, 50, 100), "interval_s": 60}
    args.update(kw)
    return start(None, **args)


def running(**kw: Any) -> GrayState:
    return begin(**kw)[0]


def traffic(ratio: float, whitelist: frozenset[str] = frozenset()) -> SetTraffic:
    return SetTraffic(GrayPolicy(ratio=ratio, whitelist=whitelist))


# --- start --------------------------------------------------------------------------------------

def test_start_scales_gray_up_and_waits_before_sending_users_then_shrinks_normal() -> None:
    state, actions = begin()
    assert actions == [Record("gray-start", "gray shop:v2 at 10%"),
                       ScaleGroup("gray", 1, "shop:v2", "v2"), WaitReady("gray", 1),
                       traffic(10), ScaleGroup("normal", 9), Analyse(60)]
    assert (state.phase, state.ratio, state.step_index) == (Phase.RUNNING, 10, 0)
    assert state.steps == (10, 30, 50, 100)
    assert state.next_step_at == at(60) and state.started_by == "ops" and state.split() == Split(1, 9)
    assert state.thresholds == Thresholds()


@pytest.mark.parametrize(("kw", "ratio", "steps", "first"), [
    ({"ratio": 20, "steps": ()}, 20, (20,), [ScaleGroup("gray", 2, "shop:v2", "v2"), WaitReady("gray", 2),
                                               traffic(20), ScaleGroup("normal", 8)]),
    ({"ratio": 20}, 20, (20, 30, 50, 100), None),              # steps above the start ratio follow
    ({"ratio": 40}, 40, (40, 50, 100), None),
    ({"steps": ()}, 10, (10,), None),                          # neither: 10 %, held
    ({"replicas": 1, "ratio": 20}, 20, (20, 30, 50, 100),      # one pod: one of each
     [ScaleGroup("gray", 1, "shop:v2", "v2"), WaitReady("gray", 1), traffic(20)]),
    ({"ratio": 0, "steps": (), "whitelist": frozenset({"qa-1"})}, 0, (0,),   # testers only: one extra pod
     [ScaleGroup("gray", 1, "shop:v2", "v2"), WaitReady("gray", 1), traffic(0, frozenset({"qa-1"}))]),
])
def test_start_ratio_and_schedule(kw: dict[str, Any], ratio: float, steps: tuple[float, ...],
                                  first: list[Action] | None) -> None:
    state, actions = begin(**kw)
    assert (state.ratio, state.steps) == (ratio, steps)
    if first is not None:
        assert actions[1:-1] == first


@pytest.mark.parametrize(("kw", "words"), [
    ({"ratio": 120}, "ratio: 120"),
    ({"ratio": -5}, "ratio: -5"),
    ({"ratio": 100}, "cannot start at 100"),
    ({"ratio": 0, "steps": ()}, "sends nobody"),
    ({"steps": (10, 10)}, "do not increase"),
    ({"steps": (50, 30)}, "do not increase"),
    ({"steps": (0, 30)}, "steps[0]"),
    ({"steps": (10, 130)}, "steps[1]"),
    ({"replicas": 0}, "nothing to split"),
    ({"interval_s": 0}, "interval"),
    ({"image": "shop:v1"}, "already runs"),
])
def test_bad_start_is_refused_naming_the_field(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(BizCloudError) as caught:
        begin(**kw)
    assert words in caught.value.message and caught.value.hint


def test_start_while_a_release_is_active_is_refused_and_after_one_ended_is_allowed() -> None:
    for active in (running(), pause(running(), now=at(1))[0], promote(running(), now=at(1))[0],
                   rollback(running(), now=at(1))[0]):
        with pytest.raises(GrayError) as caught:
            start(active, service="shop", env="dev", image="shop:v3", release="v3", base_image="shop:v1",
                  base_release="v1", replicas=10, now=at(2), user="ops")
        assert "shop:v2" in caught.value.message and "first" in caught.value.hint
    done = tick(rollback(running(), now=at(1))[0], now=at(2), seen=Observations(completed=True))[0]
    again, _ = start(done, service="shop", env="dev", image="shop:v3", release="v3", base_image="shop:v1",
                     base_release="v1", replicas=10, now=at(3), user="qa")
    assert (again.image, again.phase, again.started_by) == ("shop:v3", Phase.RUNNING, "qa")


# --- ticks: steps, analysis ---------------------------------------------------------------------

def test_a_passed_analysis_after_the_interval_advances_a_step_capacity_first() -> None:
    state, actions = tick(running(), now=at(60), seen=Observations(completed=True, verdict=OK))
    assert actions == [Record("gray-step", "step 10% -> 30%: gray: error rate 0.00%"),
                       ScaleGroup("gray", 3, "shop:v2", "v2"), WaitReady("gray", 3),
                       traffic(30), ScaleGroup("normal", 7), Analyse(60)]
    assert (state.ratio, state.step_index, state.next_step_at) == (30, 1, at(120))


def test_steps_walk_to_promotion_and_a_step_of_100_is_the_promote() -> None:
    state = running()
    ratios = []
    for n in range(1, 4):
        state, actions = tick(state, now=at(60 * n), seen=Observations(completed=True, verdict=OK))
        ratios.append(state.ratio)
    assert ratios == [30, 50, 50]
    assert state.phase is Phase.PROMOTING
    assert actions == [Record("gray-step", "50% passed (gray: error rate 0.00%); promoting"),
                       Record("gray-promote", "promoting shop:v2"),
                       SetNormalImage("shop:v2", "v2"), ScaleGroup("normal", 10), WaitReady("normal", 10),
                       traffic(0), ScaleGroup("gray", 0)]
    done, more = tick(state, now=at(200), seen=Observations(completed=True))
    assert (done.phase, more) == (Phase.PROMOTED, [])


def test_the_last_step_below_100_holds_and_keeps_guarding() -> None:
    state = running(ratio=20, steps=())
    held, actions = tick(state, now=at(60), seen=Observations(completed=True, verdict=OK))
    assert (held.phase, held.ratio, actions) == (Phase.RUNNING, 20, [Analyse(60)])
    assert "promote or roll back" in held.message and held.next_step_at == at(120)
    failed, _ = tick(held, now=at(90), seen=Observations(completed=True, verdict=FAIL))
    assert failed.phase is Phase.ROLLING_BACK


def test_a_passed_analysis_before_the_interval_analyses_the_rest_of_it() -> None:
    state, actions = tick(running(), now=at(45), seen=Observations(completed=True, verdict=OK))
    assert (state.ratio, state.step_index, actions) == (10, 0, [Analyse(15)])
    assert state.next_step_at == at(60)


def test_an_inconclusive_analysis_holds_the_step_for_another_interval() -> None:
    state, actions = tick(running(), now=at(60), seen=Observations(completed=True, verdict=MAYBE))
    assert (state.phase, state.ratio, state.step_index, actions) == (Phase.RUNNING, 10, 0, [Analyse(60)])
    assert state.next_step_at == at(120) and state.message == "holding at 10%: gray: only 3 requests"


def test_a_failed_analysis_rolls_back_on_its_own_with_the_reason() -> None:
    state = tick(running(), now=at(60), seen=Observations(completed=True, verdict=OK))[0]   # at 30 %
    back, actions = tick(state, now=at(70), seen=Observations(completed=True, verdict=FAIL))
    reason = "analysis failed at 30%: gray: error rate 50.00% over the 1.00% allowed"
    assert actions == [Record("gray-auto-rollback", reason), traffic(0), ScaleGroup("normal", 10),
                       WaitReady("normal", 10), ScaleGroup("gray", 0)]
    assert (back.phase, back.ratio, back.message) == (Phase.ROLLING_BACK, 0, reason)
    assert tick(back, now=at(80), seen=Observations(completed=True))[0].phase is Phase.ROLLED_BACK


def test_a_failed_action_rolls_back_on_its_own() -> None:
    back, actions = tick(running(), now=at(5), seen=Observations(failure="gray pods not Ready in 300 s"))
    assert back.phase is Phase.ROLLING_BACK
    assert actions[0] == Record("gray-auto-rollback", "step at 10% failed: gray pods not Ready in 300 s")


def test_idle_ticks_wait_for_the_interval_then_start_a_lost_analysis() -> None:
    state = running()
    assert tick(state, now=at(30)) == (state, [])
    again, actions = tick(state, now=at(61))
    assert actions == [Analyse(60)] and again.next_step_at == at(121) and again.ratio == 10


@pytest.mark.parametrize("make", [
    lambda: pause(running(), now=at(1))[0],
    lambda: tick(promote(running(), now=at(1))[0], now=at(2), seen=Observations(completed=True))[0],
    lambda: tick(rollback(running(), now=at(1))[0], now=at(2), seen=Observations(completed=True))[0],
])
def test_paused_and_finished_releases_do_nothing_on_ticks(make: Callable[[], GrayState]) -> None:
    state = make()
    for seen in (Observations(), Observations(verdict=FAIL), Observations(verdict=OK, completed=True),
                 Observations(failure="x")):
        assert tick(state, now=at(1000), seen=seen) == (state, [])


def test_promote_and_rollback_wait_for_their_batch_and_a_failure_is_said() -> None:
    promoting = promote(running(), now=at(1))[0]
    assert tick(promoting, now=at(2)) == (promoting, [])            # still running its batch
    failed, actions = tick(promoting, now=at(3), seen=Observations(failure="normal not Ready"))
    assert (failed.phase, actions) == (Phase.PROMOTING, [])
    assert failed.message == "promote failed: normal not Ready; run gray promote again"
    rolling = rollback(running(), now=at(1))[0]
    failed, _ = tick(rolling, now=at(3), seen=Observations(failure="api down"))
    assert failed.phase is Phase.ROLLING_BACK and "run gray rollback again" in failed.message


# --- set, pause, resume, promote, rollback ------------------------------------------------------

def test_set_ratio_up_and_down_moves_capacity_first_and_holds() -> None:
    up, actions = set_ratio(running(), ratio=50, now=at(5))
    assert actions == [Record("gray-set", "10% -> 50%"), ScaleGroup("gray", 5, "shop:v2", "v2"),
                       WaitReady("gray", 5), traffic(50), ScaleGroup("normal", 5)]
    assert (up.ratio, up.steps, up.step_index, up.next_step_at) == (50, (50,), 0, at(65))
    down, actions = set_ratio(up, ratio=20, now=at(10))
    assert actions == [Record("gray-set", "50% -> 20%"), ScaleGroup("normal", 8), WaitReady("normal", 8),
                       traffic(20), ScaleGroup("gray", 2)]
    full, actions = set_ratio(down, ratio=100, now=at(20))
    assert actions[1:] == [ScaleGroup("gray", 10, "shop:v2", "v2"), WaitReady("gray", 10), traffic(100),
                           ScaleGroup("normal", 0)]
    assert full.phase is Phase.RUNNING


def test_set_ratio_with_a_whitelist_and_while_paused() -> None:
    paused = pause(running(), now=at(1))[0]
    testers = frozenset({"qa-1", "qa-2"})
    state, actions = set_ratio(paused, ratio=0, whitelist=testers, now=at(2))
    assert state.phase is Phase.PAUSED and state.whitelist == testers
    assert actions[1:] == [ScaleGroup("normal", 10), WaitReady("normal", 10), traffic(0, testers)]
    same, actions = set_ratio(state, ratio=10, now=at(3))     # the whitelist stays
    assert same.whitelist == testers and actions[-2:] == [traffic(10, testers), ScaleGroup("normal", 9)]


def test_pause_then_resume_analyses_the_step_again_for_a_full_interval() -> None:
    paused, actions = pause(running(), now=at(30))
    assert (paused.phase, actions) == (Phase.PAUSED, [Record("gray-pause", "paused at 10%")])
    resumed, actions = resume(paused, now=at(500))
    assert actions == [Record("gray-resume", "resumed at 10%"), Analyse(60)]
    assert (resumed.phase, resumed.next_step_at, resumed.ratio) == (Phase.RUNNING, at(560), 10)


def test_promote_from_running_or_paused_and_again_to_retry() -> None:
    for state in (running(), pause(running(), now=at(1))[0]):
        promoting, actions = promote(state, now=at(5))
        assert promoting.phase is Phase.PROMOTING
        assert actions == [Record("gray-promote", "promoting shop:v2"), SetNormalImage("shop:v2", "v2"),
                           ScaleGroup("normal", 10), WaitReady("normal", 10), traffic(0),
                           ScaleGroup("gray", 0)]
        assert promote(promoting, now=at(6))[1][1:] == actions[1:]


def test_rollback_by_hand_and_from_a_half_done_promote() -> None:
    back, actions = rollback(running(ratio=30), now=at(5))
    assert actions == [Record("gray-rollback", "rolled back by hand"), traffic(0), ScaleGroup("normal", 10),
                       WaitReady("normal", 10), ScaleGroup("gray", 0)]
    assert back.phase is Phase.ROLLING_BACK
    half = promote(running(), now=at(1))[0]
    _, actions = rollback(half, now=at(2))
    assert actions[1:3] == [traffic(0), SetNormalImage("shop:v1", "v1")]
    retried, actions = rollback(back, now=at(9))          # a rollback may be retried
    assert retried.phase is Phase.ROLLING_BACK and actions[1] == traffic(0)


def test_converge_restores_what_the_state_says() -> None:
    state = running(ratio=30)
    assert converge(state) == [ScaleGroup("gray", 3, "shop:v2", "v2"), WaitReady("gray", 3),
                               ScaleGroup("normal", 7), WaitReady("normal", 7), traffic(30)]
    promoting = promote(state, now=at(1))[0]
    assert converge(promoting) == promote(state, now=at(1))[1][1:]
    back = rollback(state, now=at(1))[0]
    assert converge(back)[:2] == [traffic(0), SetNormalImage("shop:v1", "v1")]


# --- illegal transitions: refused, naming the state and the fix, nothing changed ------------------

def _states() -> dict[str, GrayState | None]:
    r = running()
    promoting = promote(r, now=at(1))[0]
    rolling = rollback(r, now=at(1))[0]
    return {"none": None, "running": r, "paused": pause(r, now=at(1))[0], "promoting": promoting,
            "promoted": tick(promoting, now=at(2), seen=Observations(completed=True))[0],
            "rolling-back": rolling,
            "rolled-back": tick(rolling, now=at(2), seen=Observations(completed=True))[0]}


TRANSITIONS: dict[str, Callable[[GrayState | None], object]] = {
    "set": lambda s: set_ratio(s, ratio=40, now=at(9)),
    "pause": lambda s: pause(s, now=at(9)),
    "resume": lambda s: resume(s, now=at(9)),
    "promote": lambda s: promote(s, now=at(9)),
    "rollback": lambda s: rollback(s, now=at(9)),
}
LEGAL = {
    "set": {"running", "paused"},
    "pause": {"running"},
    "resume": {"paused"},
    "promote": {"running", "paused", "promoting"},
    "rollback": {"running", "paused", "promoting", "rolling-back"},
}
HINT_WORDS = {"none": "gray start", "promoted": "gray start", "rolled-back": "gray start",
              "running": "gray pause", "paused": "gray resume", "promoting": "promote",
              "rolling-back": "rollback"}


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("phase", ["none", "running", "paused", "promoting", "promoted", "rolling-back",
                                   "rolled-back"])
def test_every_transition_in_every_state(name: str, phase: str) -> None:
    state = _states()[phase]
    before = dataclasses.replace(state) if state is not None else None
    if phase in LEGAL[name]:
        TRANSITIONS[name](state)
        return
    with pytest.raises(GrayError) as caught:
        TRANSITIONS[name](state)
    assert caught.value.message.startswith(f"gray {name}")
    assert (phase if phase != "none" else "no gray release exists") in caught.value.message
    assert HINT_WORDS[phase] in caught.value.hint
    assert state == before


@pytest.mark.parametrize(("ratio", "words"), [(101, "ratio: 101"), (-1, "ratio: -1"),
                                              (0, "sends nobody to gray")])
def test_set_ratio_refuses_bad_ratios_and_changes_nothing(ratio: float, words: str) -> None:
    state = running()
    with pytest.raises(BizCloudError) as caught:
        set_ratio(state, ratio=ratio, now=at(1))
    assert words in caught.value.message and caught.value.hint
    assert state == running()


def test_pods_for_adds_one_gray_pod_for_a_whitelist_alone() -> None:
    assert pods_for(10, 0, frozenset({"a"})) == Split(1, 10)
    assert pods_for(10, 0) == Split(0, 10)
    assert pods_for(10, 20, frozenset({"a"})) == Split(2, 8)
    assert pods_for(0, 0, frozenset({"a"})) == Split(0, 0)
