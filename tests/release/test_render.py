"""Templates → manifests: what each parameter becomes, the hook, and the errors that name the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bizcloud.configcenter.documents import read
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.errors import BizCloudError
from bizcloud.release.params import Platform, params_for, release_of
from bizcloud.release.render import Renderer, TemplateError, merge_patch, to_yaml

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo" / "bizcloud.yaml"


def sample(name: str) -> ServiceConfig:
    configs = {d.name: d.config for d in read(SAMPLE.read_text())}
    config = configs[name]
    assert isinstance(config, ServiceConfig)
    return config


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container(doc)["env"]}


def test_a_stateless_service_renders_namespace_both_deployments_and_budgets() -> None:
    docs = Renderer().render(params_for(sample("demo-api"), "dev", image="demo:v1"))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "bc-dev"), ("Deployment", "demo-api"), ("Deployment", "demo-api-gray"),
        ("PodDisruptionBudget", "demo-api"), ("PodDisruptionBudget", "demo-api-gray")]
    normal, gray = by_kind(docs, "Deployment")
    assert (normal["spec"]["replicas"], gray["spec"]["replicas"]) == (2, 0)
    labels = normal["spec"]["template"]["metadata"]["labels"]
    assert labels["bizcloud.io/group"] == "normal" and labels["bizcloud.io/release"] == "v1"
    assert gray["spec"]["selector"]["matchLabels"]["bizcloud.io/group"] == "gray"
    assert normal["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    c = container(normal)
    assert (c["image"], c["args"], c["ports"][0]["name"]) == ("demo:v1", ["api"], "soa")
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "soa"}
    assert c["resources"] == {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "96Mi"}}
    annotations = normal["spec"]["template"]["metadata"]["annotations"]
    assert annotations["bizcloud.io/soa-interfaces"] == "io.bizcloud.demo.DemoApi"


def test_platform_variables_come_first_then_the_services_and_the_password_by_reference() -> None:
    docs = Renderer().render(params_for(sample("demo-api"), "dev", image="demo:v1",
                                        platform=Platform(zookeeper="zk1:2181,zk2:2181")))
    env = env_of(by_kind(docs, "Deployment")[0])
    names = list(env)
    assert names[:3] == ["POD_NAME", "POD_IP", "HOST_IP"]  # $(HOST_IP) in later values expands
    assert names.index("HOST_IP") < names.index("MYSQL_HOST")
    assert env["ZK_HOSTS"] == "zk1:2181,zk2:2181"
    assert env["SOA_INTERFACES"] == "io.bizcloud.demo.DemoApi"
    assert env["MYSQL_PASSWORD"] == {"secretKeyRef": {"name": "bizcloud-mysql-demo-api", "key": "demo_api"}}
    assert env["MYSQL_HOST"] == "$(HOST_IP)"
    assert "hello" not in yaml.safe_dump(docs)  # no value of any secret is ever rendered


def test_gray_workload_runs_its_own_image_and_release() -> None:
    docs = Renderer().render(params_for(sample("demo-web"), "dev", image="demo:v1", gray_image="demo:v2",
                                        replicas=(3, 1)))
    normal, gray = by_kind(docs, "Deployment")
    assert (container(normal)["image"], container(gray)["image"]) == ("demo:v1", "demo:v2")
    assert gray["spec"]["template"]["metadata"]["labels"]["bizcloud.io/release"] == "v2"
    assert (normal["spec"]["replicas"], gray["spec"]["replicas"]) == (3, 1)


def test_files_become_a_configmap_mounted_by_path_and_their_checksum_rolls_pods() -> None:
    base = sample("demo-web").model_dump()
    file = {"name": "app.yaml", "mount": "/etc/demo/app.yaml"}
    one = ServiceConfig(**{**base, "files": [{**file, "content": "a: 1"}]})
    two = ServiceConfig(**{**base, "files": [{**file, "content": "a: 2"}]})
    docs = Renderer().render(params_for(one, "dev", image="demo:v1"))
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["data"] == {"app.yaml": "a: 1"}
    deployment = by_kind(docs, "Deployment")[0]
    assert container(deployment)["volumeMounts"] == [
        {"name": "files", "mountPath": "/etc/demo/app.yaml", "subPath": "app.yaml", "readOnly": True}]
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["bizcloud.io/files-checksum"]
    other = by_kind(Renderer().render(params_for(two, "dev", image="demo:v1")), "Deployment")[0]
    assert other["spec"]["template"]["metadata"]["annotations"]["bizcloud.io/files-checksum"] != checksum


def test_a_stateful_service_gets_statefulsets_and_a_headless_service() -> None:
    config = ServiceConfig(**{**sample("demo-api").model_dump(), "type": "stateful"})
    docs = Renderer().render(params_for(config, "dev", image="demo:v1"))
    assert [d["kind"] for d in docs].count("StatefulSet") == 2
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert by_kind(docs, "StatefulSet")[0]["spec"]["serviceName"] == "demo-api"


def test_values_cannot_break_out_of_their_field() -> None:
    config = ServiceConfig(**{**sample("demo-web").model_dump(), "env": {"X": "a\n  injected: true\n- b: {"}})
    docs = Renderer().render(params_for(config, "dev", image="demo:v1"))
    assert env_of(by_kind(docs, "Deployment")[0])["X"] == "a\n  injected: true\n- b: {"


def test_the_hook_patches_rendered_objects_and_adds_its_own() -> None:
    config = ServiceConfig(**{**sample("demo-web").model_dump(), "customize": {
        "patches": [
            {"kind": "Deployment", "group": "gray", "merge": {"spec": {"revisionHistoryLimit": 1}}},
            {"kind": "Deployment", "name": "demo-web",
             "json": [{"op": "add", "path": "/spec/template/spec/priorityClassName", "value": "high"}]},
        ],
        "manifests": [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "demo-web"}}],
    }})
    docs = Renderer().render(params_for(config, "dev", image="demo:v1"))
    normal, gray = by_kind(docs, "Deployment")
    assert (normal["spec"]["revisionHistoryLimit"], gray["spec"]["revisionHistoryLimit"]) == (5, 1)
    assert normal["spec"]["template"]["spec"]["priorityClassName"] == "high"
    assert "priorityClassName" not in gray["spec"]["template"]["spec"]
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == "bc-dev"
    assert sa["metadata"]["labels"]["bizcloud.io/service"] == "demo-web"


@pytest.mark.parametrize(("customize", "message"), [
    ({"patches": [{"kind": "CronJob", "merge": {"a": 1}}]},
     "customize.patches[0]: matches no rendered object"),
    ({"patches": [{"kind": "Deployment", "json": [{"op": "replace", "path": "/spec/nope/x", "value": 1}]}]},
     "customize.patches[0]"),
    ({"manifests": [{"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "x", "namespace": "kube-system"}}]},
     "names namespace 'kube-system'"),
])
def test_a_hook_that_does_not_fit_is_refused_by_name(customize: dict[str, Any], message: str) -> None:
    config = ServiceConfig(**{**sample("demo-web").model_dump(), "customize": customize})
    with pytest.raises(TemplateError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Renderer().render(params_for(config, "dev", image="demo:v1"))


def test_a_missing_variable_names_the_variable_and_the_template_line(tmp_path: Path) -> None:
    (tmp_path / "stateless").mkdir()
    (tmp_path / "stateless" / "10-x.yaml.j2").write_text("kind: ConfigMap\nmetadata:\n  name: {{ nope }}\n")
    with pytest.raises(TemplateError) as e:
        Renderer(tmp_path).render(params_for(sample("demo-web"), "dev", image="demo:v1"))
    assert "line 3" in str(e.value) and "'nope' is undefined" in str(e.value)
    assert "10-x.yaml.j2" in str(e.value)


def test_an_environment_without_parameters_is_refused_with_what_exists() -> None:
    with pytest.raises(BizCloudError, match="no parameters for environment 'qa'") as e:
        params_for(sample("demo-web"), "qa", image="demo:v1")
    assert "it has: dev" in e.value.hint
    docs = Renderer().render(params_for(sample("demo-web"), "qa", image="demo:v1", base_env="dev"))
    assert docs[0]["metadata"]["name"] == "bc-qa"


def test_a_service_may_not_override_the_platforms_variables() -> None:
    config = ServiceConfig(**{**sample("demo-web").model_dump(), "env": {"POD_IP": "1.2.3.4"}})
    with pytest.raises(BizCloudError, match=r"env\.POD_IP: BizCloud sets this variable itself"):
        params_for(config, "dev", image="demo:v1")


@pytest.mark.parametrize(("image", "release"), [
    ("demo:v2", "v2"), ("demo", "latest"), ("registry.example:5000/team/demo:1.4.0", "1.4.0"),
    ("demo@sha256:" + "ab" * 32, "abababababab")])
def test_release_label_is_the_images_tag(image: str, release: str) -> None:
    assert release_of(image) == release


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_output_is_plain_multi_document_yaml() -> None:
    docs = Renderer().render(params_for(sample("demo-web"), "dev", image="demo:v1"))
    assert list(yaml.safe_load_all(to_yaml(docs))) == docs


@pytest.mark.parametrize("text", ["hi 😀", "𝄞 clef", "a\x85b", "line\u2028sep", "\x00\x1f\x7f\x9f",
                                  "'\"\\ <&>",
                                  "\ufeffbom", "yes", "0x10", "null", "~", "- item", "key: value"])
def test_any_text_reads_back_exactly(text: str) -> None:
    config = ServiceConfig(**{**sample("demo-web").model_dump(), "env": {"X": text},
                              "files": [{"name": "f", "mount": "/etc/f", "content": text}]})
    docs = Renderer().render(params_for(config, "dev", image="demo:v1"))
    assert env_of(by_kind(docs, "Deployment")[0])["X"] == text
    assert by_kind(docs, "ConfigMap")[0]["data"]["f"] == text
    assert list(yaml.safe_load_all(to_yaml(docs))) == docs
