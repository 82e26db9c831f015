"""The Python side of the user-ID split, against the shared vectors the Lua side also checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bizcloud.usersplit import BUCKETS, GrayPolicy, bucket, is_gray

VECTORS = json.loads((Path(__file__).parent / "vectors" / "user_buckets.json").read_text("utf-8"))["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["uid"])[:30])
def test_bucket_matches_the_shared_vectors(vector: dict[str, object]) -> None:
    assert bucket(str(vector["uid"])) == vector["bucket"]


def test_vectors_cover_the_whole_range_and_odd_input() -> None:
    buckets = {v["bucket"] for v in VECTORS}
    assert min(buckets) < BUCKETS // 10 and max(buckets) > BUCKETS * 9 // 10
    assert any(not str(v["uid"]).isascii() for v in VECTORS)


@pytest.mark.parametrize(("uid", "ratio", "whitelist", "gray"), [
    (None, 100, (), False),          # anonymous traffic never goes gray
    ("", 100, (), False),
    ("42", 0, ("42",), True),        # the whitelist wins at ratio 0
    ("42", 100, (), True),           # ratio 100: everyone with an ID
    ("42", 0, (), False),
    ("1", bucket("1") / 100, (), False),           # the boundary is exclusive ...
    ("1", (bucket("1") + 1) / 100, (), True),      # ... and one bucket more includes it
])
def test_is_gray(uid: str | None, ratio: float, whitelist: tuple[str, ...], gray: bool) -> None:
    assert is_gray(uid, ratio, whitelist) is gray


def test_twenty_percent_of_many_users_go_gray() -> None:
    share = sum(is_gray(f"user-{i}", 20) for i in range(20_000)) / 20_000
    assert abs(share - 0.20) < 0.01


def test_gray_policy_round_trips_and_refuses_a_bad_ratio() -> None:
    policy = GrayPolicy(ratio=20, whitelist=frozenset({"42"}), fallback=False)
    assert GrayPolicy.from_json(policy.to_json()) == policy
    assert policy.group_for("42") == "gray" and policy.group_for(None) == "normal"
    with pytest.raises(ValueError, match="ratio"):
        GrayPolicy(ratio=120)
