"""Template sets as Helm charts: the same objects, for teams whose pipelines run `helm`.

A chart per template set lives under ``helm/<set>/`` (its ``Chart.yaml`` and ``objects.yaml``)
with the named Go templates every set shares under ``helm/common/``; they mirror the Jinja2
sets in ``templates/`` object for object. ``export_chart`` writes one service's chart: the set's
templates plus a ``values.yaml`` made from its ``ReleaseParams``, so that ``helm template`` of
the export renders the objects ``Renderer().render(params)`` does (``tests/release/
test_helm_chart.py`` holds the two side by side on the real ``helm``). Helm prints them in its
own kind order (Namespace, ConfigMap, Service, workloads, budgets); the objects are the same.

Pure apart from reading the chart files and writing the export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from bizcloud.errors import BizCloudError
from bizcloud.release.params import ReleaseParams
from bizcloud.release.render import Renderer, tojson

CHARTS = Path(__file__).resolve().parent / "helm"
COMMON = CHARTS / "common"
EXPORT_MARK = "bizcloud.io/exported-from"
VALUES_HEADER = ("# BizCloud's parameters of {service} in {env} (template set {kind}), exported by\n"
                 "# `bizcloud render {service} --env {env} --helm-chart DIR`. JSON, which is YAML: every\n"
                 "# string stays a string. Patches and extra manifests are JSON text, so their nulls\n"
                 "# (RFC 7386: remove this key) survive Helm's values handling.\n")

__all__ = ["CHARTS", "ChartExportError", "chart_values", "copy_templates", "export_chart"]


class ChartExportError(BizCloudError):
    """A service whose objects a Helm chart cannot reproduce, or a directory the export would spoil."""


def _check_expressible(params: ReleaseParams) -> None:
    """JSON patches need list surgery by index that Go templates have no tools for: refuse them."""
    for i, patch in enumerate(params.customize.patches):
        if patch.json_patch is not None:
            raise ChartExportError(
                f"customize.patches[{i}]: a JSON patch (RFC 6902) has no Helm chart form",
                hint="write it as a merge patch (customize.patches[].merge, RFC 7386) to export the "
                     "chart, or deploy with `bizcloud deploy`, which applies JSON patches")


def chart_values(params: ReleaseParams) -> dict[str, Any]:
    """The chart's values for ``params``: what the Jinja2 templates read, in JSON types.

    Purely computational. Absent optional fields are left out rather than null, as Helm drops
    null values; patches and manifests travel as JSON text for the same reason.
    """
    _check_expressible(params)
    values: dict[str, Any] = params.model_dump(
        mode="json", exclude_none=True, include={
            "service", "env", "namespace", "ports", "command", "args", "env_vars", "cpu", "memory",
            "probe", "files", "files_checksum", "annotations", "workloads", "readiness_gates"})
    values["labels"] = params.labels
    patches = []
    for patch in params.customize.patches:
        entry: dict[str, Any] = {"kind": patch.kind, "merge": json.dumps(patch.merge)}
        if patch.name is not None:
            entry["name"] = patch.name
        if patch.group is not None:
            entry["group"] = patch.group
        patches.append(entry)
    values["customize"] = {"patches": patches,
                           "manifests": [json.dumps(m) for m in params.customize.manifests]}
    return values


def copy_templates(kind: str, directory: Path) -> None:
    """The set's chart files and the shared named templates, into ``directory``."""
    source = CHARTS / kind
    if kind == "common" or not (source / "Chart.yaml").is_file():
        known = ", ".join(sorted(p.parent.name for p in CHARTS.glob("*/Chart.yaml")))
        raise ChartExportError(f"no Helm chart for template set {kind!r}", hint=f"the charts are: {known}")
    templates = directory / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for part in (COMMON, source):
        for path in sorted((part / "templates").iterdir()):
            shutil.copyfile(path, templates / path.name)
    shutil.copyfile(COMMON / "values.schema.json", directory / "values.schema.json")


def _check_directory(directory: Path) -> None:
    """Write into an empty directory or over an earlier export, never over anybody's files."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ChartExportError(f"--helm-chart {directory}: exists and is not a directory",
                               hint="name a new or empty directory")
    if not any(directory.iterdir()):
        return
    chart = directory / "Chart.yaml"
    try:
        meta = yaml.safe_load(chart.read_text()) if chart.is_file() else None
    except yaml.YAMLError:
        meta = None
    if not (isinstance(meta, dict) and EXPORT_MARK in (meta.get("annotations") or {})):
        raise ChartExportError(f"--helm-chart {directory}: the directory holds files that are not an "
                               "exported chart", hint="name a new or empty directory (or an earlier export, "
                                                      "which is replaced)")
    shutil.rmtree(directory / "templates", ignore_errors=True)


def export_chart(params: ReleaseParams, directory: Path) -> Path:
    """Write a Helm chart that renders this service's objects, and return its directory.

    The chart is the service's template set (stateless or stateful) in Go templates, with a
    ``values.yaml`` holding this service's parameters in this environment: image and gray image,
    replica counts of both groups, resources, variables, files, probe and the ``customize`` hook.
    ``helm template NAME DIR`` prints the same objects as ``bizcloud render`` (in Helm's kind
    order), and ``helm install``/``upgrade`` deploy them; ``--set`` changes a value, e.g.
    ``--set cpu=250m`` (lists, such as ``workloads``, are replaced whole: edit values.yaml).

    Refused, with nothing written: a service ``bizcloud render`` refuses, and one whose
    ``customize.patches`` holds a JSON patch (RFC 6902), which a chart cannot express (a merge
    patch can). ``directory`` must be new, empty, or an earlier export (which is replaced).
    """
    Renderer().render(params)  # the same refusals as `bizcloud render`, before anything is written
    values = chart_values(params)
    _check_directory(directory)
    copy_templates(params.type, directory)
    chart = yaml.safe_load((CHARTS / params.type / "Chart.yaml").read_text())
    chart.update(name=params.service, appVersion=params.workloads[0].release,
                 annotations={EXPORT_MARK: f"bizcloud template set {params.type}"})
    (directory / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    header = VALUES_HEADER.format(service=params.service, env=params.env, kind=params.type)
    # The same escaping as the Jinja2 sets: UTF-8 text, never surrogate pairs (Go's YAML refuses them).
    (directory / "values.yaml").write_text(header + tojson(values) + "\n", encoding="utf-8")
    return directory
