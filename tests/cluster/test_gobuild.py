"""Go module builds: pins, version flags and the cache that lets a second build skip the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bizcloud.cluster import gobuild
from bizcloud.cluster.versions import CRI_TOOLS, ETCD, KUBERNETES, component_for
from bizcloud.errors import BuildError, PrerequisiteError


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


def test_missing_go_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrerequisiteError) as missing:
        gobuild.go_binary()
    assert "Go is not installed" in missing.value.message
    assert "install Go" in missing.value.hint


def test_an_unreachable_module_proxy_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `go` against a proxy address where nothing listens (a closed loopback port)."""
    proxy = "http://127.0.0.1:9"
    monkeypatch.setenv("GOPROXY", proxy)
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOSUMDB", "off")
    with pytest.raises(BuildError) as unreachable:
        gobuild.build_component(gobuild.go_binary(), tmp_path / "cache", CRI_TOOLS, progress=lambda _: None)
    assert f"the Go module proxy ({proxy}) could not be reached" in unreachable.value.message
    assert str(tmp_path / "cache") in unreachable.value.hint
