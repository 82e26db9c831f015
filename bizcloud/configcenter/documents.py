"""From uploaded YAML text to validated configs: parsing, field-named errors and the canonical form.

The first step of ``store.apply`` (and of the web layer's permission check, which needs the names
before anything is stored). Purely computational, no I/O: text in, ``Document`` values or one
``ConfigError`` listing every problem out.

- YAML is read with a safe loader that also refuses duplicate keys (PyYAML would silently keep the
  last one and lose the first) and anchors/aliases (a few lines could expand into gigabytes).
- Each problem starts with its field path as a user writes it: ``dependencies.mysql[0].user``;
  a YAML syntax error names its line and column.
- The canonical form (models' fields in declaration order, map keys and sets sorted, defaults
  filled in) decides whether an upload changed anything and is what diffs compare.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bizcloud.configcenter.errors import ConfigError
from bizcloud.configcenter.schema import Inventory, ServiceConfig
from bizcloud.identifiers import InvalidNameError

Kind = Literal["Service", "Inventory"]
KINDS: dict[str, type[ServiceConfig] | type[Inventory]] = {"Service": ServiceConfig, "Inventory": Inventory}
INVENTORY = "inventory"  # the inventory's name in the store and the API; no service may take it
MAX_TEXT = 1024 * 1024
# Keys of environment variables that would hold a secret: the config center stores and serves
# configs in clear, so such values belong in a Kubernetes Secret instead.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|credential|private_?key|api_?key)")
_PLAIN_LOC = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Document:
    kind: Kind
    name: str
    config: ServiceConfig | Inventory
    text: str       # this document's text as uploaded
    canonical: str  # canonical JSON


def read(text: str) -> list[Document]:
    """Every document of ``text`` (one or several, ``---``-separated), validated; else one ConfigError."""
    if len(text) > MAX_TEXT:
        raise ConfigError("the upload is too large", [f"the text has {len(text)} characters; "
                                                      f"the limit is {MAX_TEXT}"])
    try:
        texts = _document_texts(text)
        data = list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError("the upload is not valid YAML", [_yaml_problem(e)],
                          hint="fix the YAML at the line named") from e
    except RecursionError as e:
        raise ConfigError("the upload is not valid YAML", ["(document): nested too deeply"]) from e
    documents = [(t, d) for t, d in zip(texts, data, strict=True) if d is not None]
    if not documents:
        raise ConfigError("the upload holds no config", ["the text is empty: give a kind: Service or "
                                                         "kind: Inventory document"])
    several = len(documents) > 1
    problems: list[str] = []
    result: list[Document] = []
    for index, (doc_text, doc) in enumerate(documents, start=1):
        try:
            result.append(_document(doc_text, doc))
        except ConfigError as e:
            prefix = f"document {index}{_named(doc)}: " if several else ""
            problems.extend(prefix + p for p in e.problems)
    names = [d.name for d in result]
    problems.extend(f"name: {n!r} appears in more than one document; give each config once"
                    for n in sorted({n for n in names if names.count(n) > 1}))
    if problems:
        raise ConfigError("the config was refused" if not several else "the configs were refused", problems)
    return result


def _named(doc: object) -> str:
    if isinstance(doc, Mapping):
        name = doc.get("name", INVENTORY if doc.get("kind") == "Inventory" else None)
        if isinstance(name, str) and len(name) <= 64:
            return f" ({name})"
    return ""


def _document(text: str, doc: object) -> Document:
    if not isinstance(doc, Mapping):
        raise ConfigError("not a mapping", [f"(document): expected a mapping with kind, name, …; "
                                            f"got {type(doc).__name__}"])
    kind = doc.get("kind", "Service")
    if kind not in KINDS:
        raise ConfigError("unknown kind", [f"kind: {kind!r} is not known — use Service or Inventory"])
    try:
        config = KINDS[kind].model_validate(doc)
    except ValidationError as e:
        raise ConfigError("invalid config", [problem(err) for err in e.errors()]) from e
    problems = list(_secrets(config))
    if isinstance(config, ServiceConfig) and config.name == INVENTORY:
        problems.append(f"name: {INVENTORY!r} is reserved for the inventory — choose another service name")
    if problems:
        raise ConfigError("invalid config", problems)
    name = config.name if isinstance(config, ServiceConfig) else INVENTORY
    return Document(kind=kind, name=name, config=config, text=text, canonical=canonical_json(config))


def _secrets(config: ServiceConfig | Inventory) -> Iterator[str]:
    if isinstance(config, ServiceConfig):
        places = [("env", config.env)]
        places += [(f"resources.{env}.env", r.env) for env, r in config.resources.items()]
        for place, variables in places:
            for key in variables:
                if _SECRET_KEY.search(key):
                    yield (f"{place}.{key}: looks like a secret — configs are stored and shown "
                           "in clear; keep it in a Kubernetes Secret and give the variable from there")


# --- errors ------------------------------------------------------------------------------------

def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a user writes the path: ``dependencies.mysql[0].user``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_LOC.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path


def problem(error: ErrorDetails) -> str:
    """One pydantic error as ``field.path: what is wrong — what to do``."""
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-1]
    where = location(loc) or "(document)"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidNameError):
        message = cause.one_line().removeprefix(f"{cause.field}: ")  # the value as the check saw it
    elif error["type"] == "extra_forbidden":
        message = "unknown key — remove it or check its spelling"
    elif error["type"] == "missing":
        message = "required — add it"
    else:
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error" and not loc:  # a model validator names its own field
            return message
    if is_key:
        message = f"the key {loc[-1]!r}: {message}" if loc else message
    return f"{where}: {message}"


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    if mark is None:
        return what
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases (nothing silently lost, nothing expanded)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (*name) are not accepted; "
                                              "write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _document_texts(text: str) -> list[str]:
    """Each document's own slice of ``text`` (without its ``---`` line), in order."""
    texts: list[str] = []
    start = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.DocumentStartEvent) and event.explicit and event.end_mark:
            start = event.end_mark.index
        elif isinstance(event, yaml.DocumentEndEvent) and event.end_mark:
            end = event.end_mark.index
            texts.append(text[start:end].strip("\n") + "\n")
            start = end
    return texts


# --- canonical form ----------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """JSON-ready data in a stable order: models by field order, maps by key, sets sorted."""
    if isinstance(value, BaseModel):
        return {name: plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in sorted(value)}
    if isinstance(value, frozenset | set):
        return sorted(plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def canonical_json(config: ServiceConfig | Inventory) -> str:
    return json.dumps(plain(config), separators=(",", ":"), ensure_ascii=False)


def canonical_yaml(canonical: str) -> str:
    """The canonical JSON as YAML, in the same order: what diffs compare line by line."""
    data = json.loads(canonical)
    if data is None:
        return ""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
