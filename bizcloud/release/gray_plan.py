"""The gray release as a state machine: each transition returns the new state and the actions to run.

Purely computational, no side effects. The gray controller's runner loads a ``GrayState`` from
``ReleaseStore`` (under ``ReleaseStore.operation``), calls one transition, stores the new state,
then executes the actions in order against the cluster, the catalog and ZooKeeper:

- ``ScaleGroup(group, replicas, image, release)`` — set ``<svc>`` (normal) or ``<svc>-gray``'s
  replicas (and, when given, its image and ``bizcloud.io/release`` label);
- ``WaitReady(group, replicas)`` — wait until that many pods of the group are Ready; a timeout is a
  failure (stop the batch, report it in the next ``tick``);
- ``SetTraffic(policy)`` — ``CatalogStore.set_gray_policy`` and ``soa.consumer.write_gray_policy``
  with the same ``GrayPolicy``, so the gateway and the SOA layer move together;
- ``Analyse(window_s)`` — scrape the gateway now and after ``window_s`` seconds, judge the gray
  group with ``analysis.verdict`` and report the ``Verdict`` in the next ``tick``;
- ``SetNormalImage(image, release)`` — roll the normal Deployment to that image (promote, or undo a
  half-done promote);
- ``Record(action, message)`` — append a ``release_history`` row.

After a batch, the runner calls ``tick(state, now=…, seen=Observations(completed=…, verdict=…,
failure=…))``; between batches it calls ``tick`` with empty observations every few seconds. After a
restart it runs ``converge(state)`` first: the idempotent actions that bring the cluster to what
the state says.

Rules: capacity before traffic — the group that grows is scaled and Ready before the ratio moves,
the group that shrinks is scaled down only after; a step advances once its pods are Ready, its
interval has passed and its analysis passed; a failed analysis rolls back on its own; an
inconclusive one holds the step; a paused release does nothing on ticks. Illegal transitions raise
``GrayError`` naming the state and the fix, and return nothing, so nothing changes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Outcome, Thresholds, Verdict
from bizcloud.release.replicas import Split, check_ratio, split
from bizcloud.usersplit import GrayPolicy, GroupName


class GrayError(BizCloudError):
    """A gray transition that is not allowed in the release's state; nothing was changed."""


class Phase(StrEnum):
    RUNNING = "running"          # gray serves its share; steps advance on ticks
    PAUSED = "paused"            # as running, but ticks do nothing
    PROMOTING = "promoting"      # the normal Deployment is moving to the gray image
    PROMOTED = "promoted"        # done: normal runs the new image, gray is at 0
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"  # done: normal runs the base image, gray is at 0


ACTIVE = frozenset({Phase.RUNNING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK})


@dataclass(frozen=True)
class GrayState:
    """One service+env's gray release: the ``gray_releases`` row as a value."""

    service: str
    env: str
    image: str                      # the gray image under trial
    release: str                    # its bizcloud.io/release label
    base_image: str                 # what normal ran when the release started
    base_release: str
    replicas: int                   # the service's total replicas T, shared by the two groups
    ratio: float                    # percent of users on gray now
    steps: tuple[float, ...]        # the ratios to walk through; a step of 100 is the promotion
    step_index: int
    interval_s: int
    whitelist: frozenset[str]
    thresholds: Thresholds
    phase: Phase
    message: str
    started_by: str
    started_at: datetime
    updated_at: datetime
    next_step_at: datetime | None   # when the current step may advance (or be analysed again)

    def policy(self) -> GrayPolicy:
        return GrayPolicy(ratio=self.ratio, whitelist=self.whitelist)

    def split(self) -> Split:
        return pods_for(self.replicas, self.ratio, self.whitelist)


# --- actions --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleGroup:
    group: GroupName
    replicas: int
    image: str | None = None
    release: str | None = None


@dataclass(frozen=True)
class WaitReady:
    group: GroupName
    replicas: int


@dataclass(frozen=True)
class SetTraffic:
    policy: GrayPolicy


@dataclass(frozen=True)
class Analyse:
    window_s: int


@dataclass(frozen=True)
class SetNormalImage:
    image: str
    release: str


@dataclass(frozen=True)
class Record:
    action: str      # a release_history action: gray-start, gray-step, gray-auto-rollback …
    message: str


Action = ScaleGroup | WaitReady | SetTraffic | Analyse | SetNormalImage | Record


@dataclass(frozen=True)
class Observations:
    """What the runner saw since the last transition: the batch ran to the end, a verdict, a failure."""

    completed: bool = False
    verdict: Verdict | None = None
    failure: str | None = None


Plan = tuple[GrayState, list[Action]]


# --- arithmetic -----------------------------------------------------------------------------------

def pods_for(replicas: int, ratio: float, whitelist: frozenset[str] = frozenset()) -> Split:
    """``replicas.split``, plus one gray pod for a whitelist alone (ratio 0): the listed users need one.

    The normal group keeps all ``replicas`` then: the whitelist's few users do not take its capacity.
    """
    pods = split(replicas, ratio)
    if pods.gray == 0 and whitelist and replicas > 0:
        return Split(gray=1, normal=replicas)
    return pods


def move(state: GrayState, ratio: float, whitelist: frozenset[str], *,
         before: Split | None = None) -> list[Action]:
    """The actions taking traffic and pods from ``before`` (``state``'s split) to ``ratio``.

    Capacity before traffic: the group that grows is scaled (gray with its image) and waited for;
    then the traffic moves; then the group that shrinks is scaled down, once no user is sent to
    the pods it loses.
    """
    old, new = before or state.split(), pods_for(state.replicas, ratio, whitelist)
    actions: list[Action] = []
    if new.gray > old.gray:
        actions += [ScaleGroup("gray", new.gray, state.image, state.release), WaitReady("gray", new.gray)]
    if new.normal > old.normal:
        actions += [ScaleGroup("normal", new.normal), WaitReady("normal", new.normal)]
    actions.append(SetTraffic(GrayPolicy(ratio=ratio, whitelist=whitelist)))
    if new.gray < old.gray:
        actions.append(ScaleGroup("gray", new.gray))
    if new.normal < old.normal:
        actions.append(ScaleGroup("normal", new.normal))
    return actions


def _schedule(ratio: float | None, steps: Sequence[float]) -> tuple[float, ...]:
    for i, s in enumerate(steps):
        check_ratio(s, field=f"steps[{i}]")
        if s <= 0:
            raise GrayError(f"steps[{i}]: a step of {s:g} sends nobody to gray",
                            hint="give steps above 0, e.g. --steps 10,30,50,100")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise GrayError(f"steps: {','.join(f'{s:g}' for s in steps)} do not increase",
                        hint="give each step a higher ratio than the one before, e.g. --steps 10,30,50,100")
    if ratio is None:
        return tuple(steps) or (10.0,)
    check_ratio(ratio)
    return (ratio, *(s for s in steps if s > ratio))


def _interval(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise GrayError(f"interval: {seconds!r} is not a duration",
                        hint="give the time each step is analysed as whole seconds, 1 or more, e.g. 60s")
    return seconds


NO_RELEASE = "no gray release is running: start one with `bizcloud gray start SVC --env E --image IMG`"
HINTS = {
    None: NO_RELEASE, Phase.PROMOTED: NO_RELEASE, Phase.ROLLED_BACK: NO_RELEASE,
    Phase.RUNNING: "it is running, not paused: `bizcloud gray pause` first",
    Phase.PAUSED: "it is paused: `bizcloud gray resume` to go on",
    Phase.PROMOTING: "wait for the promote to finish (`bizcloud gray status`) or run `bizcloud gray promote` "
                     "again to retry it",
    Phase.ROLLING_BACK: "wait for the rollback to finish (`bizcloud gray status`) or run "
                        "`bizcloud gray rollback` again to retry it",
}


def _refuse(state: GrayState | None, doing: str, hint: str | None = None) -> GrayError:
    hint = hint or HINTS[None if state is None else state.phase]
    if state is None:
        return GrayError(f"{doing}: no gray release exists for this service and environment", hint=hint)
    return GrayError(f"{doing}: the gray release of {state.service} in {state.env} ({state.image}) is "
                     f"{state.phase.value}", hint=hint)


def _need(state: GrayState | None, doing: str, allowed: frozenset[Phase]) -> GrayState:
    if state is None or state.phase not in allowed:
        raise _refuse(state, doing)
    return state


# --- transitions ----------------------------------------------------------------------------------

def start(previous: GrayState | None, *, service: str, env: str, image: str, release: str, base_image: str,
          base_release: str, replicas: int, now: datetime, user: str, ratio: float | None = None,
          steps: Sequence[float] = (), interval_s: int = 60, whitelist: frozenset[str] = frozenset(),
          thresholds: Thresholds | None = None) -> Plan:
    """Start a gray release of ``image`` at ``ratio`` (default: the first step, or 10 %).

    ``steps`` after the start ratio advance automatically; a release without further steps holds
    its ratio until a person runs ``set``, ``promote`` or ``rollback``. Allowed when no release is
    active for the service+env (none yet, or the last one promoted or rolled back).
    """
    if previous is not None and previous.phase in ACTIVE:
        raise _refuse(previous, "gray start", "promote it (`bizcloud gray promote`) or roll it back "
                                              "(`bizcloud gray rollback`) first")
    schedule = _schedule(ratio, steps)
    if schedule[0] == 100:
        raise GrayError("ratio: a gray release cannot start at 100",
                        hint="start lower (e.g. --ratio 10) and promote, or deploy the image directly")
    if schedule[0] == 0 and not whitelist:
        raise GrayError("ratio: 0 with no --uids sends nobody to gray",
                        hint="give a ratio above 0 or the user IDs to send to gray (--uids a,b)")
    if replicas < 1:
        raise GrayError(f"replicas: {service} in {env} has {replicas} replicas, nothing to split",
                        hint=f"scale it first: `bizcloud scale {service} --env {env} --replicas 2`")
    if image == base_image:
        raise GrayError(f"image: {image} is what {service} already runs in {env}",
                        hint="give the new image to try with --image")
    base = GrayState(service=service, env=env, image=image, release=release, base_image=base_image,
                     base_release=base_release, replicas=replicas, ratio=0.0, steps=schedule, step_index=0,
                     interval_s=_interval(interval_s), whitelist=frozenset(whitelist),
                     thresholds=thresholds or Thresholds(), phase=Phase.RUNNING, message="", started_by=user,
                     started_at=now, updated_at=now, next_step_at=None)
    first = schedule[0]
    actions = move(base, first, base.whitelist, before=Split(gray=0, normal=replicas))
    state = _at_step(base, 0, first, now, f"gray {image} at {first:g}%")
    return state, [Record("gray-start", state.message), *actions, Analyse(state.interval_s)]


def _at_step(state: GrayState, index: int, ratio: float, now: datetime, message: str) -> GrayState:
    return dataclasses.replace(state, step_index=index, ratio=ratio, message=message, updated_at=now,
                               next_step_at=now + timedelta(seconds=state.interval_s))


def set_ratio(state: GrayState | None, *, ratio: float, now: datetime,
              whitelist: frozenset[str] | None = None) -> Plan:
    """Move to ``ratio`` by hand (and optionally a new whitelist); the release then holds there.

    Allowed while running or paused (a paused release stays paused). 100 sends every user to the
    gray image (normal at 0 pods) without promoting; 0 needs a whitelist, else use ``rollback``.
    """
    state = _need(state, "gray set", frozenset({Phase.RUNNING, Phase.PAUSED}))
    check_ratio(ratio)
    listed = state.whitelist if whitelist is None else frozenset(whitelist)
    if ratio == 0 and not listed:
        raise GrayError("ratio: 0 with no whitelist sends nobody to gray",
                        hint="to end the release run `bizcloud gray rollback`; to keep testers on it, "
                             "give --uids")
    actions = move(state, ratio, listed)
    new = _at_step(dataclasses.replace(state, steps=(ratio,), whitelist=listed), 0, ratio, now,
                   f"set to {ratio:g}% by hand")
    return new, [Record("gray-set", f"{state.ratio:g}% -> {ratio:g}%"), *actions]


def pause(state: GrayState | None, *, now: datetime) -> Plan:
    """Stop stepping and analysing; traffic and pods stay where they are."""
    state = _need(state, "gray pause", frozenset({Phase.RUNNING}))
    new = dataclasses.replace(state, phase=Phase.PAUSED, message=f"paused at {state.ratio:g}%",
                              updated_at=now)
    return new, [Record("gray-pause", new.message)]


def resume(state: GrayState | None, *, now: datetime) -> Plan:
    """Go on from a pause: the current step is analysed for a full interval again before it advances."""
    state = _need(state, "gray resume", frozenset({Phase.PAUSED}))
    new = _at_step(dataclasses.replace(state, phase=Phase.RUNNING), state.step_index, state.ratio, now,
                   f"resumed at {state.ratio:g}%")
    return new, [Record("gray-resume", new.message), Analyse(new.interval_s)]


def _promote_actions(state: GrayState) -> list[Action]:
    return [SetNormalImage(state.image, state.release), ScaleGroup("normal", state.replicas),
            WaitReady("normal", state.replicas), SetTraffic(GrayPolicy(ratio=0.0)), ScaleGroup("gray", 0)]


def _rollback_actions(state: GrayState, *, undo_image: bool) -> list[Action]:
    """Ratio 0 first (users leave the gray pods at once; while normal is short of pods the gateway's
    fallback serves them), then normal back to full size and Ready, then gray to 0."""
    undo: list[Action] = [SetNormalImage(state.base_image, state.base_release)] if undo_image else []
    return [SetTraffic(GrayPolicy(ratio=0.0)), *undo, ScaleGroup("normal", state.replicas),
            WaitReady("normal", state.replicas), ScaleGroup("gray", 0)]


def promote(state: GrayState | None, *, now: datetime) -> Plan:
    """Make the gray image the normal one: normal to the image and Ready, traffic to normal, gray to 0.

    Allowed while gray is running (or paused); again while promoting, to retry a promote that failed.
    """
    state = _need(state, "gray promote", frozenset({Phase.RUNNING, Phase.PAUSED, Phase.PROMOTING}))
    new = dataclasses.replace(state, phase=Phase.PROMOTING, message=f"promoting {state.image}",
                              updated_at=now, next_step_at=None)
    return new, [Record("gray-promote", new.message), *_promote_actions(new)]


def rollback(state: GrayState | None, *, now: datetime, reason: str = "",
             automatic: bool = False) -> Plan:
    """Back to the base image: normal at full size and Ready, ratio 0, then gray to 0.

    A half-done promote is undone too (normal back to the base image). Allowed in every active
    phase, again while rolling back, to retry one that failed.
    """
    state = _need(state, "gray rollback", ACTIVE)
    why = reason or "rolled back by hand"
    actions = _rollback_actions(state, undo_image=state.phase is Phase.PROMOTING)
    new = dataclasses.replace(state, phase=Phase.ROLLING_BACK, ratio=0.0, message=why, updated_at=now,
                              next_step_at=None)
    return new, [Record("gray-auto-rollback" if automatic else "gray-rollback", why), *actions]


def converge(state: GrayState) -> list[Action]:
    """Idempotent actions making the cluster what ``state`` says: the runner's first act after a restart."""
    if state.phase in (Phase.PROMOTING, Phase.PROMOTED):
        return _promote_actions(state)
    if state.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        return _rollback_actions(state, undo_image=True)
    pods = state.split()
    return [ScaleGroup("gray", pods.gray, state.image, state.release), WaitReady("gray", pods.gray),
            ScaleGroup("normal", pods.normal), WaitReady("normal", pods.normal), SetTraffic(state.policy())]


def tick(state: GrayState, *, now: datetime, seen: Observations = Observations()) -> Plan:
    """Drive the release on: finish a promote or rollback, judge the analysis, advance a step."""
    if state.phase in (Phase.PAUSED, Phase.PROMOTED, Phase.ROLLED_BACK):
        return state, []
    if state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        if seen.failure:
            doing = "promote" if state.phase is Phase.PROMOTING else "rollback"
            return dataclasses.replace(state, message=f"{doing} failed: {seen.failure}; run gray {doing} "
                                                      "again", updated_at=now), []
        if not seen.completed:
            return state, []
        done = Phase.PROMOTED if state.phase is Phase.PROMOTING else Phase.ROLLED_BACK
        message = f"{state.image} promoted" if done is Phase.PROMOTED else state.message
        return dataclasses.replace(state, phase=done, message=message, updated_at=now), []
    if seen.failure:
        return rollback(state, now=now, reason=f"step at {state.ratio:g}% failed: {seen.failure}",
                        automatic=True)
    due = state.next_step_at is None or now >= state.next_step_at
    if seen.verdict is None:
        if not due:
            return state, []
        # an analysis is due and none came back (a resumed or restarted runner): start one
        return _at_step(state, state.step_index, state.ratio, now, state.message), [Analyse(state.interval_s)]
    result = seen.verdict
    if result.outcome is Outcome.FAIL:
        return rollback(state, now=now, reason=f"analysis failed at {state.ratio:g}%: {result.reason}",
                        automatic=True)
    if result.outcome is Outcome.INCONCLUSIVE:
        held = _at_step(state, state.step_index, state.ratio, now,
                        f"holding at {state.ratio:g}%: {result.reason}")
        return held, [Analyse(state.interval_s)]
    if not due:
        assert state.next_step_at is not None
        left = max(1, int((state.next_step_at - now).total_seconds()))
        return dataclasses.replace(state, message=result.reason, updated_at=now), [Analyse(left)]
    following = state.step_index + 1
    if following >= len(state.steps):     # the last step: hold, keep guarding it
        held = _at_step(state, state.step_index, state.ratio, now,
                        f"holding at {state.ratio:g}%: {result.reason}; promote or roll back when ready")
        return held, [Analyse(state.interval_s)]
    target = state.steps[following]
    if target == 100:
        promoted, actions = promote(state, now=now)
        return promoted, [Record("gray-step", f"{state.ratio:g}% passed ({result.reason}); promoting"),
                          *actions]
    actions = move(state, target, state.whitelist)
    new = _at_step(state, following, target, now, f"step {state.ratio:g}% -> {target:g}%: {result.reason}")
    return new, [Record("gray-step", new.message), *actions, Analyse(new.interval_s)]
