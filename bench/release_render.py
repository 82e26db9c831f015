"""Release templates: render 1,000 instantiations beside `helm template`, apply 100 beside kubectl.

`python -m bench.release_render [--render N] [--apply N] [--no-apply]`.

**Render.** N distinct instantiations of the two sample services (``examples/demo``) with varying
names, environments, images, gray images, replica counts, variables, files and service type
(every tenth stateful). The same objects three ways:

- **BizCloud**: one ``Renderer`` in this process, ``render`` then ``to_yaml`` per instantiation
  (text out, like helm), as ``bizcloud deploy`` and ``env create`` call it; the objects alone
  are reported too;
- **helm, one process per instantiation**: ``helm template`` of each service's exported chart
  (``bizcloud.release.helm.export_chart``), how pipelines call it;
- **helm's best case**: one ``helm template`` per template set of a chart whose one template
  loops over a list of every service's values and includes the very same named templates; its
  values carry no schema (the per-service schema does not apply to a list), so helm validates
  nothing there. Two calls (stateless, stateful), timed together.

Every helm output is parsed and checked to hold exactly the objects BizCloud rendered (outside the
timings). The Helm binary is built from its Go module by the cached builder when missing.

**Apply.** N services (replicas 0 in both groups, so nothing is scheduled) over ten throwaway
namespaces per contender on the running cluster (``make up``): BizCloud's
``server_side_apply`` of the rendered objects (one call for all, and one call per service with
eight at a time) beside ``kubectl apply --server-side -f`` of the same YAML (discovery cache
warmed first). Then the same apply again, which changes nothing. The namespaces are deleted at
the end. Skipped, and said so, when no cluster is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.common import RESULTS
from bizcloud.cluster import gobuild, lifecycle
from bizcloud.cluster.versions import HELM
from bizcloud.configcenter.documents import read
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.kube.apply import server_side_apply
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import load_kubeconfig
from bizcloud.release.helm import CHARTS, chart_values, copy_templates, export_chart
from bizcloud.release.params import ReleaseParams, params_for
from bizcloud.release.render import Manifest, Renderer, to_yaml
from bizcloud.settings import Settings, get_settings

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo" / "bizcloud.yaml"
GOAL_RATIO = 2.0
LOOP_TEMPLATE = ('{{- /* helm\'s best case: every service in one call */ -}}\n'
                 '{{- range .Values.services }}{{ include "bizcloud.set" . }}{{ end }}\n')
Log = Callable[[str], None]


def instantiations(n: int, *, envs: tuple[str, ...] = ("dev",), replicas: bool = True) -> list[ReleaseParams]:
    """``n`` distinct services from the sample configs: names, images, replicas, variables vary."""
    samples = [d.config for d in read(SAMPLE.read_text()) if isinstance(d.config, ServiceConfig)]
    out = []
    for i in range(n):
        base = samples[i % len(samples)].model_dump(by_alias=True)
        env = envs[i % len(envs)]
        config = ServiceConfig(**{
            **base, "name": f"{base['name']}-{i:04d}", "type": "stateful" if i % 10 == 9 else "stateless",
            "env": {**base["env"], **{f"VAR_{k}": f"value-{i}-{k}" for k in range(i % 8)}},
            "files": [{"name": "app.yaml", "mount": "/etc/app/app.yaml", "content": f"instance: {i}\n"}]
            if i % 4 == 0 else [],
            "resources": {env: {"replicas": 1 + i % 5, "cpu": f"{10 + i % 90}m", "memory": "96Mi",
                                "env": {"INDEX": str(i)}}},
        })
        counts = (i % 3, i % 2) if replicas else (0, 0)
        out.append(params_for(config, env, image=f"demo:v{1 + i % 7}",
                              gray_image=f"demo:v{2 + i % 7}" if i % 2 else None, replicas=counts))
    return out


def _parsed(text: str) -> list[Manifest]:
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


def _canonical(docs: list[Manifest]) -> Counter[str]:
    return Counter(json.dumps(d, sort_keys=True) for d in docs)


def _helm(cache_dir: Path) -> Path:
    gobuild.build_all(cache_dir, (HELM,))
    return gobuild.binary_path(cache_dir, HELM, "helm")


def _run_helm(helm: Path, chart: Path) -> str:
    proc = subprocess.run([str(helm), "template", "bench", str(chart)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helm template {chart}: {proc.stderr.strip()}")
    return proc.stdout


def _loop_chart(kind: str, params: list[ReleaseParams], directory: Path) -> Path:
    copy_templates(kind, directory)
    (directory / "values.schema.json").unlink()
    (directory / "templates" / "objects.yaml").write_text(LOOP_TEMPLATE)
    (directory / "Chart.yaml").write_text((CHARTS / kind / "Chart.yaml").read_text())
    (directory / "values.yaml").write_text(json.dumps({"services": [chart_values(p) for p in params]}))
    return directory


def run_render(*, n: int, scratch: Path, cache_dir: Path, log: Log = print) -> dict[str, Any]:
    helm = _helm(cache_dir)
    params = instantiations(n)
    renderer = Renderer()
    for kind in ("stateless", "stateful"):
        renderer.template_set(kind)          # compiled once, as a long-running deploy service does

    started = time.perf_counter()
    docs = [renderer.render(p) for p in params]
    objects_s = time.perf_counter() - started
    started = time.perf_counter()
    texts = [to_yaml(renderer.render(p)) for p in params]
    bizcloud_s = time.perf_counter() - started
    expected = _canonical([d for ds in docs for d in ds])
    count = sum(expected.values())
    assert _canonical([d for t in texts for d in _parsed(t)]) == expected
    log(f"  BizCloud: {count} objects in {bizcloud_s:.2f} s (objects only {objects_s:.2f} s)")

    charts = [export_chart(p, scratch / "charts" / p.service) for p in params]
    started = time.perf_counter()
    outputs = [_run_helm(helm, chart) for chart in charts]
    per_process_s = time.perf_counter() - started
    assert _canonical([d for t in outputs for d in _parsed(t)]) == expected, "helm rendered other objects"
    log(f"  helm, one process each: {per_process_s:.1f} s")

    loops = [_loop_chart(kind, [p for p in params if p.type == kind], scratch / f"loop-{kind}")
             for kind in ("stateless", "stateful")]
    started = time.perf_counter()
    outputs = [_run_helm(helm, chart) for chart in loops]
    loop_s = time.perf_counter() - started
    assert _canonical([d for t in outputs for d in _parsed(t)]) == expected, "helm rendered other objects"
    log(f"  helm, one call per template set: {loop_s:.2f} s")

    return {
        "instantiations": n, "objects": count, "helm_version": HELM.version,
        "bizcloud_s": bizcloud_s, "bizcloud_objects_only_s": objects_s,
        "helm_per_process_s": per_process_s, "helm_one_call_s": loop_s,
        "objects_per_s": {"bizcloud": count / bizcloud_s, "helm_per_process": count / per_process_s,
                          "helm_one_call": count / loop_s},
        "ratio_vs_helm_per_process": per_process_s / bizcloud_s,
        "ratio_vs_helm_one_call": loop_s / bizcloud_s,
        "goal_ratio": GOAL_RATIO,
    }


async def _apply_all(settings: Settings, docs: list[list[Manifest]], *, concurrency: int
                     ) -> tuple[float, float]:
    """Wall time and this process's CPU time of applying every service's objects."""
    async with KubeClient.from_config(load_kubeconfig(lifecycle.kubeconfig_path(settings))) as client:
        started, cpu = time.perf_counter(), time.process_time()
        if concurrency == 1:
            await server_side_apply(client, [d for ds in docs for d in ds])
        else:
            gate = asyncio.Semaphore(concurrency)

            async def one(objs: list[Manifest]) -> None:
                async with gate:
                    await server_side_apply(client, objs)
            await asyncio.gather(*(one(ds) for ds in docs))
        return time.perf_counter() - started, time.process_time() - cpu


def run_apply(settings: Settings, *, n: int, scratch: Path, log: Log = print) -> dict[str, Any]:
    kubectl = lifecycle.kubectl(settings)
    run_id = uuid.uuid4().hex[:5]
    contenders = {"kubectl": 0, "bizcloud": 1, "bizcloud_parallel": 8}
    envs = {name: tuple(f"rb{run_id}{name[0]}{name[-1]}{k}" for k in range(10)) for name in contenders}
    rendered = {name: [Renderer().render(p) for p in instantiations(n, envs=envs[name], replicas=False)]
                for name in contenders}
    result: dict[str, Any] = {"services": n, "objects": sum(len(d) for d in rendered["kubectl"]),
                              "namespaces_per_contender": 10}
    kubectl.run("get", "namespaces")                                  # warm kubectl's discovery cache
    try:
        for name, concurrency in contenders.items():
            times, cpu = [], []
            for _ in ("create", "again"):
                if concurrency:
                    wall, used = asyncio.run(_apply_all(settings, rendered[name], concurrency=concurrency))
                    times.append(wall)
                    cpu.append(used)
                else:
                    manifest = scratch / "kubectl.yaml"
                    manifest.write_text(to_yaml(d for ds in rendered[name] for d in ds))
                    started = time.perf_counter()
                    kubectl.run("apply", "--server-side", "--field-manager=bizcloud-bench",
                                "-f", str(manifest), timeout=600)
                    times.append(time.perf_counter() - started)
            result[name] = {"create_s": times[0], "again_s": times[1]}
            if cpu:
                result[name]["client_cpu_s"] = {"create": cpu[0], "again": cpu[1]}
            log(f"  {name}: create {times[0]:.1f} s, again {times[1]:.1f} s"
                + (f" (client CPU {cpu[0]:.1f} s, {cpu[1]:.1f} s)" if cpu else ""))
        for name in ("bizcloud", "bizcloud_parallel"):
            result[f"ratio_{name}_vs_kubectl"] = {
                phase: result["kubectl"][f"{phase}_s"] / result[name][f"{phase}_s"]
                for phase in ("create", "again")}
    finally:
        created = [f"bc-{e}" for names in envs.values() for e in names]
        kubectl.run("delete", "namespace", "--ignore-not-found", "--wait=true", *created,
                    timeout=600, check=False)
    return result


def print_table(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415 - only when printing

    table = Table("release templates", "figure", title="Render and apply")
    if "render" in r:
        x = r["render"]
        rate = x["objects_per_s"]
        table.add_row(f"render {x['instantiations']} services ({x['objects']} objects), BizCloud",
                      f"{x['bizcloud_s']:.2f} s, {rate['bizcloud']:.0f} objects/s")
        table.add_row(f"  helm {x['helm_version']} template, one process per service",
                      f"{x['helm_per_process_s']:.1f} s, {rate['helm_per_process']:.0f} objects/s")
        table.add_row("  helm template, one call per template set (its best case)",
                      f"{x['helm_one_call_s']:.2f} s, {rate['helm_one_call']:.0f} objects/s")
        table.add_row(f"  BizCloud faster than helm per process / one call (goal {x['goal_ratio']:.0f}x)",
                      f"{x['ratio_vs_helm_per_process']:.1f}x / {x['ratio_vs_helm_one_call']:.1f}x")
    if "apply" in r:
        a = r["apply"]
        for name, label in (("bizcloud", "BizCloud, one call"),
                            ("bizcloud_parallel", "BizCloud, 8 services at once"),
                            ("kubectl", "kubectl apply --server-side -f")):
            table.add_row(f"apply {a['services']} services ({a['objects']} objects), {label}",
                          f"{a[name]['create_s']:.1f} s (again {a[name]['again_s']:.1f} s)")
        for name in ("bizcloud", "bizcloud_parallel"):
            ratio = a[f"ratio_{name}_vs_kubectl"]
            table.add_row(f"  kubectl time / {name} time (create, again)",
                          f"{ratio['create']:.2f}x, {ratio['again']:.2f}x")
    console.print(table)


def run(*, render: int = 1000, apply: int = 100, settings: Settings | None = None,
        log: Log = print) -> dict[str, Any]:
    settings = settings or get_settings()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bizbench-render-") as scratch:
        if render:
            log(f"render {render} instantiations beside helm template…")
            (Path(scratch) / "render").mkdir()
            result["render"] = run_render(n=render, scratch=Path(scratch) / "render",
                                          cache_dir=settings.cache_dir, log=log)
        if apply and not lifecycle.status(settings)["up"]:
            log("apply skipped: no cluster is up (`make up` or `bizcloud cluster up` first)")
        elif apply:
            log(f"apply {apply} services beside kubectl apply --server-side…")
            result["apply"] = run_apply(settings, n=apply, scratch=Path(scratch), log=log)
    return result


if __name__ == "__main__":
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m bench.release_render")
    parser.add_argument("--render", type=int, default=1000, help="instantiations to render (0 skips)")
    parser.add_argument("--apply", type=int, default=100, help="services to apply on the cluster (0 skips)")
    args = parser.parse_args()
    outcome = run(render=args.render, apply=args.apply)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "release_render.json").write_text(json.dumps(outcome, indent=2) + "\n")
    print_table(Console(), outcome)
