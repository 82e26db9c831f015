"""The Helm chart export renders, under the real `helm template`, the objects the Jinja2 sets render.

Helm is built from its Go module by the cached builder when it is not built yet (minutes, once per
machine), so this test never skips for want of it. Objects are compared parsed, keyed by kind,
namespace and name: Helm prints them in its own kind order.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bizcloud.cluster import gobuild
from bizcloud.cluster.versions import HELM
from bizcloud.configcenter.documents import read
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.release.helm import ChartExportError, export_chart
from bizcloud.release.params import Platform, ReleaseParams, params_for
from bizcloud.release.render import Renderer, TemplateError
from bizcloud.settings import get_settings

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo" / "bizcloud.yaml"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> Path:
    cache = get_settings().cache_dir
    gobuild.build_all(cache, (HELM,))
    return gobuild.binary_path(cache, HELM, "helm")


def sample(name: str, **changes: Any) -> ServiceConfig:
    configs = {d.name: d.config for d in read(SAMPLE.read_text())}
    config = configs[name]
    assert isinstance(config, ServiceConfig)
    return ServiceConfig(**{**config.model_dump(by_alias=True), **changes}) if changes else config


def helm_template(helm: Path, chart: Path, *extra: str) -> list[Doc]:
    proc = subprocess.run([str(helm), "template", "release", str(chart), *extra],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_identity(docs: list[Doc]) -> dict[tuple[str, str, str, str], Doc]:
    keyed = {(d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
             for d in docs}
    assert len(keyed) == len(docs), "two objects share a kind, namespace and name"
    return keyed


def assert_same_objects(helm: Path, params: ReleaseParams, tmp_path: Path) -> list[Doc]:
    expected = Renderer().render(params)
    rendered = helm_template(helm, export_chart(params, tmp_path / "chart"))
    assert by_identity(rendered) == by_identity(expected)
    return rendered


FILES = [{"name": "app.yaml", "mount": "/etc/demo/app.yaml", "content": "a: 1\nb: [x, 'y']\n"},
         {"name": "tricky.txt", "mount": "/etc/demo/tricky.txt",
          "content": '{{ .Values.nope }} {% raw %} "quoted" <&> \\ \t ünïcødé \u2028 \x85 \n'
                     '---\nkind: Pod\n'},
         {"name": "empty", "mount": "/etc/demo/empty"}]
STRINGS_THAT_LOOK_LIKE_OTHER_TYPES = {"PORT": "3316", "YES": "yes", "OCTAL": "0o17", "NULL": "null",
                                      "FLOAT": "1e3", "EMPTY": "", "TILDE": "~", "BREAKOUT": "a\n- b: {",
                                      "NEL": "a\x85b", "LS": "a\u2028b"}
HOOK = {
    "patches": [
        {"kind": "Deployment", "group": "gray", "merge": {"spec": {"revisionHistoryLimit": 1}}},
        {"kind": "Deployment", "name": "demo-web", "merge": {"spec": {"template": {"spec": {
            "priorityClassName": "high\x85", "schedulerName": "s\u2028",
            "terminationGracePeriodSeconds": None,
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": None}]}}}}},
        {"kind": "PodDisruptionBudget", "merge": {"spec": {"maxUnavailable": None, "minAvailable": "50%"},
                                                  "metadata": {"annotations": {"x": "y"}}}},
        {"kind": "Namespace", "merge": {"metadata": {"labels": {"team": "web"}}}},
        {"kind": "Deployment", "merge": {"metadata": {"labels": {"bizcloud.io/group": None}}}},
    ],
    "manifests": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "demo-web"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "extra", "namespace": "bc-dev", "labels": {"bizcloud.io/service": "other",
                                                                         "mine": "kept"}},
         "data": {"k": "3316", "n": None}},
    ],
}

CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (sample, config changes, params_for arguments)
    "demo-web as deployed": ("demo-web", {}, {}),
    "demo-api: SOA provider, MySQL secret": ("demo-api", {}, {}),
    "two MySQL accounts, no single MYSQL_PASSWORD": ("demo-api", {"dependencies": {"mysql": [
        {"cluster": "local", "database": "demo", "user": "demo_api", "privileges": ["SELECT"]},
        {"cluster": "local", "database": "logs", "user": "demo_log", "privileges": ["INSERT"]}]}}, {}),
    "gray image and replicas": ("demo-web", {}, {
        "gray_image": "registry.example:5000/demo@sha256:" + "ab" * 32, "replicas": (3, 1)}),
    "files with awkward content": ("demo-web", {"files": FILES}, {}),
    "tcp probe, command and args": ("demo-web", {
        "probe": {"port": "http", "period_s": 7}, "command": ["/bin/app", "--flag=1"],
        "args": ["a b", "--"]}, {}),
    "no probe, no ports": ("demo-web", {"probe": None, "ports": {}}, {}),
    "several ports": ("demo-api", {"ports": {"soa": 20880, "http": 8080, "admin": 9000}}, {}),
    "strings that look like other types": ("demo-web", {"env": STRINGS_THAT_LOOK_LIKE_OTHER_TYPES}, {}),
    "environment variables of the environment": ("demo-web", {"resources": {"dev": {
        "replicas": 1000, "cpu": "1.5", "memory": "1Gi", "env": {"LEVEL": "debug"}}}}, {}),
    "stateful with files": ("demo-api", {"type": "stateful", "files": FILES[:1]}, {"replicas": (2, 2)}),
    "stateful without ports": ("demo-api", {"type": "stateful", "ports": {}, "probe": None}, {}),
    "hook: merge patches and extra manifests": ("demo-web", {"customize": HOOK}, {}),
    "stateful hook": ("demo-api", {"type": "stateful", "customize": {"patches": [
        {"kind": "StatefulSet", "merge": {"spec": {"volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "1Gi"}}}}]}}},
        {"kind": "Service", "merge": {"spec": {"publishNotReadyAddresses": True}}}]}}, {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_helm_template_renders_the_same_objects(helm: Path, tmp_path: Path, case: str) -> None:
    name, changes, kwargs = CASES[case]
    params = params_for(sample(name, **changes), "dev", image="demo:v1",
                        platform=Platform(zookeeper="zk1:2181,zk2:2181"), **kwargs)
    assert_same_objects(helm, params, tmp_path)


def test_characters_beyond_the_basic_plane(helm: Path, tmp_path: Path) -> None:
    config = sample("demo-web", env={"GREETING": "hi 😀"},
                    files=[{"name": "a.txt", "mount": "/etc/a.txt", "content": "𝄞 clef"}])
    assert_same_objects(helm, params_for(config, "dev", image="demo:v1"), tmp_path)


def test_the_hook_took_effect_under_helm(helm: Path, tmp_path: Path) -> None:
    """The comparison above would pass if neither side patched: check the patched fields directly."""
    params = params_for(sample("demo-web", customize=HOOK), "dev", image="demo:v1")
    docs = by_identity(assert_same_objects(helm, params, tmp_path))
    normal = docs[("apps/v1", "Deployment", "bc-dev", "demo-web")]
    gray = docs[("apps/v1", "Deployment", "bc-dev", "demo-web-gray")]
    assert normal["spec"]["template"]["spec"]["priorityClassName"] == "high\x85"
    assert "terminationGracePeriodSeconds" not in normal["spec"]["template"]["spec"]
    assert (normal["spec"]["revisionHistoryLimit"], gray["spec"]["revisionHistoryLimit"]) == (5, 1)
    assert gray["spec"]["replicas"] == 0 and "bizcloud.io/group" not in gray["metadata"]["labels"]
    pdb = docs[("policy/v1", "PodDisruptionBudget", "bc-dev", "demo-web")]
    assert pdb["spec"] == {"minAvailable": "50%", "selector": pdb["spec"]["selector"]}
    extra = docs[("v1", "ConfigMap", "bc-dev", "extra")]
    assert extra["metadata"]["labels"] == {
        "bizcloud.io/service": "demo-web", "mine": "kept", "bizcloud.io/env": "dev",
        "app.kubernetes.io/managed-by": "bizcloud"}
    assert extra["data"] == {"k": "3316", "n": None}
    assert docs[("v1", "ServiceAccount", "bc-dev", "demo-web")]["metadata"]["namespace"] == "bc-dev"


def test_the_export_is_a_chart_helm_lints_and_values_override(helm: Path, tmp_path: Path) -> None:
    chart = export_chart(params_for(sample("demo-api"), "dev", image="demo:v1"), tmp_path / "chart")
    lint = subprocess.run([str(helm), "lint", "--strict", str(chart)], capture_output=True, text=True,
                          check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert (meta["name"], meta["appVersion"]) == ("demo-api", "v1")
    docs = helm_template(helm, chart, "--set", "cpu=250m")
    requests = {d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
                for d in docs if d["kind"] == "Deployment"}
    assert requests == {"250m"}


def test_a_values_file_that_breaks_the_schema_is_refused_by_helm(helm: Path, tmp_path: Path) -> None:
    chart = export_chart(params_for(sample("demo-web"), "dev", image="demo:v1"), tmp_path / "chart")
    proc = subprocess.run([str(helm), "template", "r", str(chart), "--set", "workloads=null"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "workloads" in proc.stderr


def test_a_json_patch_is_refused_with_the_way_out_and_nothing_written(tmp_path: Path) -> None:
    config = sample("demo-web", customize={"patches": [
        {"kind": "Deployment", "merge": {"spec": {"paused": False}}},
        {"kind": "Deployment", "json": [{"op": "add", "path": "/spec/paused", "value": True}]}]})
    with pytest.raises(ChartExportError, match=r"customize\.patches\[1\]: a JSON patch") as e:
        export_chart(params_for(config, "dev", image="demo:v1"), tmp_path / "chart")
    assert "merge patch" in e.value.hint and "bizcloud deploy" in e.value.hint
    assert not (tmp_path / "chart").exists()


def test_what_render_refuses_export_refuses(tmp_path: Path) -> None:
    config = sample("demo-web", customize={"manifests": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "kube-system"}}]})
    with pytest.raises(TemplateError, match="names namespace 'kube-system'"):
        export_chart(params_for(config, "dev", image="demo:v1"), tmp_path / "chart")
    assert not (tmp_path / "chart").exists()


def test_an_export_replaces_an_earlier_one_but_never_other_files(tmp_path: Path) -> None:
    params = params_for(sample("demo-web"), "dev", image="demo:v1")
    chart = export_chart(params, tmp_path / "chart")
    (chart / "templates" / "stale.yaml").write_text("kind: Stale\n")
    export_chart(params_for(sample("demo-web"), "dev", image="demo:v2"), chart)
    assert not (chart / "templates" / "stale.yaml").exists()
    assert '"image": "demo:v2"' in (chart / "values.yaml").read_text()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ChartExportError, match="holds files that are not an exported chart"):
        export_chart(params, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
