"""Go module builds: pins, version flags and the cache that lets a second build skip the work."""

from __future__ import annotations

import json
from pathlib import Path

from bizcloud.cluster import gobuild
from bizcloud.cluster.versions import ETCD, KUBERNETES, component_for


def test_staging_modules_follow_the_kubernetes_minor_and_patch() -> None:
    assert KUBERNETES.staging_version() == "v0" + KUBERNETES.version[2:]


def test_kubernetes_version_is_stamped_into_both_version_packages() -> None:
    flags = " ".join(KUBERNETES.ldflags)
    assert f"k8s.io/component-base/version.gitVersion={KUBERNETES.version}" in flags
    assert f"k8s.io/client-go/pkg/version.gitVersion={KUBERNETES.version}" in flags


def test_kubernetes_stays_on_1_34_for_cgroup_v1() -> None:
    assert KUBERNETES.version.startswith("v1.34.")


def test_component_for_finds_the_module_of_each_binary() -> None:
    assert component_for("kubelet") is KUBERNETES
    assert component_for("etcd") is ETCD


def test_cache_hit_needs_the_same_spec_and_every_binary(tmp_path: Path) -> None:
    out = gobuild.bin_dir(tmp_path, ETCD)
    out.mkdir(parents=True)
    assert not gobuild.is_built(tmp_path, ETCD)
    (out / "etcd").write_text("binary")
    (out / gobuild.STAMP).write_text(json.dumps(gobuild.build_spec(ETCD)))
    assert gobuild.is_built(tmp_path, ETCD)
    (out / gobuild.STAMP).write_text(json.dumps({**gobuild.build_spec(ETCD), "version": "v0.0.1"}))
    assert not gobuild.is_built(tmp_path, ETCD)
