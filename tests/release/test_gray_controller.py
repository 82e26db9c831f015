"""The gray controller's pure edges: durations as users type them, the state as the API shows it, and
which HTTP status each refusal gets. The controller's I/O is tested end to end (tests/e2e/test_gray.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from bizcloud.errors import BizCloudError
from bizcloud.release.analysis import Thresholds
from bizcloud.release.gray import GrayNotFound, seconds, state_json
from bizcloud.release.gray_api import http_error
from bizcloud.release.gray_plan import GrayError, GrayState, Phase
from bizcloud.release.store import OperationConflict

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("typed", "expected"), [
    ("60s", 60), ("60", 60), (60, 60), ("5m", 300), ("1h", 3600), (" 90s ", 90), ("2M", 120), ("1", 1),
])
def test_durations(typed: str | int, expected: int) -> None:
    assert seconds(typed) == expected


@pytest.mark.parametrize("typed", ["0", "0s", "-5s", "1.5s", "5 minutes", "s", "", True, "10d"])
def test_bad_durations_name_the_field_and_the_fix(typed: str | int) -> None:
    with pytest.raises(BizCloudError, match=r"^interval: .* is not a duration") as e:
        seconds(typed)
    assert "60s, 5m, 1h" in e.value.hint


def _state(phase: Phase, ratio: float = 20.0) -> GrayState:
    return GrayState(service="demo-web", env="dev", image="demo:v2", release="v2", base_image="demo:v1",
                     base_release="v1", replicas=10, ratio=ratio, steps=(20.0, 50.0), step_index=0,
                     interval_s=60, whitelist=frozenset({"b", "a"}), thresholds=Thresholds(), phase=phase,
                     message="", started_by="alice", started_at=T0, updated_at=T0, next_step_at=None)


@pytest.mark.parametrize(("phase", "gray", "normal", "active"), [
    (Phase.RUNNING, 2, 8, True),
    (Phase.PAUSED, 2, 8, True),
    (Phase.PROMOTING, 0, 10, True),       # where the batch goes: normal at full size, gray at 0
    (Phase.ROLLING_BACK, 0, 10, True),
    (Phase.PROMOTED, 0, 10, False),
    (Phase.ROLLED_BACK, 0, 10, False),
])
def test_state_shows_the_pods_each_phase_wants(phase: Phase, gray: int, normal: int, active: bool) -> None:
    shown = state_json(_state(phase))
    assert shown["pods"] == {"gray": gray, "normal": normal}
    assert shown["active"] is active and shown["phase"] == phase.value
    assert shown["whitelist"] == ["a", "b"] and shown["started_at"] == T0.isoformat()
    assert shown["next_step_at"] is None


def test_state_of_a_running_release_follows_its_ratio() -> None:
    half = dataclasses.replace(_state(Phase.RUNNING), ratio=50.0)
    assert state_json(half)["pods"] == {"gray": 5, "normal": 5}


@pytest.mark.parametrize(("error", "status"), [
    (GrayNotFound("demo-web has no gray release in environment 'qa'"), 404),
    (BizCloudError("service 'nope' has no config in the config center"), 404),
    (GrayError("gray promote: the gray release of demo-web in dev (demo:v2) is rolled-back"), 409),
    (OperationConflict("deploy is already running on demo-web in dev"), 409),
    (BizCloudError("ratio: 150 is not a percentage", hint="give ratio as a number from 0 to 100"), 400),
])
def test_each_refusal_gets_its_status_with_message_and_hint(error: BizCloudError, status: int) -> None:
    answer = http_error(error)
    detail: Any = answer.detail   # typed str; the release routes send {"message", "hint"}
    assert answer.status_code == status
    assert detail == {"message": error.message, "hint": error.hint}
