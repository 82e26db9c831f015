"""Template sets → Kubernetes manifests: Jinja2 with StrictUndefined, then the service's own hook.

A template set is a directory of ``*.yaml.j2`` files rendered in name order (``stateless/``,
``stateful/``, or a directory of the operator's own with the same parameters). Every value goes
through ``tojson`` (JSON is YAML), so no parameter can break out of its field. A missing
variable is reported with the variable and the template line; a template that renders broken
YAML with the template and the rendered line. The service's ``customize`` hook then adds its
extra manifests and patches the rendered objects (RFC 7386 merge or RFC 6902 JSON patch).
Pure apart from reading the template files once.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import jsonpatch
import yaml

from bizcloud.configcenter.schema import Patch
from bizcloud.errors import BizCloudError
from bizcloud.release.params import ReleaseParams
from bizcloud.release.yamlcodec import dump_documents, load_documents, tojson

TEMPLATES = Path(__file__).resolve().parent / "templates"
Manifest = dict[str, Any]

__all__ = ["TEMPLATES", "Manifest", "Renderer", "TemplateError", "merge_patch", "to_yaml", "tojson"]


class TemplateError(BizCloudError):
    """A template set that cannot render these parameters (or a hook that does not fit them)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _template_line(e: BaseException) -> str:
    """Where in a template an error arose: Jinja2 rewrites tracebacks to point at template lines."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return "a template"
    frame = frames[-1]
    path = Path(frame.filename)
    shown = path.relative_to(TEMPLATES) if path.is_relative_to(TEMPLATES) else path
    return f"{shown} line {frame.lineno}"


class Renderer:
    """Compiles each template once; rendering is then a dictionary walk and a YAML parse
    (``yamlcodec.load_documents``: rapidyaml, with PyYAML's reading of every scalar)."""

    def __init__(self, root: Path = TEMPLATES) -> None:
        self.root = root
        self._env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)),
                                       undefined=jinja2.StrictUndefined, autoescape=False,
                                       keep_trailing_newline=True, auto_reload=False)
        self._env.filters["tojson"] = tojson
        self._sets: dict[str, list[jinja2.Template]] = {}

    def template_set(self, kind: str) -> list[jinja2.Template]:
        if kind not in self._sets:
            names = sorted(p.name for p in (self.root / kind).glob("*.yaml.j2"))
            if not names:
                raise TemplateError(f"no template set {kind!r} under {self.root}",
                                    hint="a template set is a directory of *.yaml.j2 files "
                                         "named for a service type")
            self._sets[kind] = [self._env.get_template(f"{kind}/{name}") for name in names]
        return self._sets[kind]

    def render(self, params: ReleaseParams) -> list[Manifest]:
        context = params.template_context()
        docs: list[Manifest] = []
        for template in self.template_set(params.type):
            try:
                text = template.render(context)
            except jinja2.UndefinedError as e:
                raise TemplateError(f"{_template_line(e)}: {e.message}",
                                    hint="every variable a template uses must be a parameter "
                                         "(bizcloud/release/params.py); fix the name or add the "
                                         "parameter") from e
            try:
                docs.extend(d for d in load_documents(text) if d)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" (rendered line {mark.line + 1})" if mark is not None else ""
                problem = getattr(e, "problem", e)
                raise TemplateError(f"{template.name} renders invalid YAML{where}: {problem}",
                                    hint="values must go through `| tojson`; "
                                         "check the template's indentation") from e
        return customize(docs, params)


def _matches(doc: Manifest, patch: Patch) -> bool:
    meta = doc.get("metadata", {})
    return (doc.get("kind") == patch.kind and (patch.name is None or meta.get("name") == patch.name)
            and (patch.group is None or meta.get("labels", {}).get("bizcloud.io/group") == patch.group))


def customize(docs: list[Manifest], params: ReleaseParams) -> list[Manifest]:
    """The service's hook: patches first (on rendered objects only), then its extra manifests."""
    for i, patch in enumerate(params.customize.patches):
        hits = [n for n, doc in enumerate(docs) if _matches(doc, patch)]
        if not hits:
            kinds = ", ".join(sorted({d["kind"] for d in docs}))
            raise TemplateError(f"customize.patches[{i}]: matches no rendered object",
                                hint=f"the template set renders: {kinds}; check kind, name and group")
        for n in hits:
            try:
                docs[n] = (merge_patch(docs[n], patch.merge) if patch.merge is not None
                           else jsonpatch.apply_patch(docs[n], list(patch.json_patch or ())))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise TemplateError(f"customize.patches[{i}]: {e}",
                                    hint="an RFC 6902 path must exist in the rendered object; "
                                         "see `bizcloud render SVC --env E`") from e
    for extra in params.customize.manifests:
        doc = copy.deepcopy(extra)
        meta = doc["metadata"]
        meta.setdefault("namespace", params.namespace)
        if meta["namespace"] != params.namespace:
            raise TemplateError(f"customize.manifests: {doc['kind']} {meta['name']} names namespace "
                                f"{meta['namespace']!r}",
                                hint=f"its objects live in {params.namespace}; drop metadata.namespace")
        meta["labels"] = {**meta.get("labels", {}), **params.labels}
        docs.append(doc)
    return docs


def to_yaml(docs: Iterable[Manifest]) -> str:
    """Standard multi-document YAML that stock ``kubectl apply -f -`` accepts."""
    return dump_documents(docs)
