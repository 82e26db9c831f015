"""Manifest text ↔ objects, fast: rendered templates in, ``kubectl apply``-able YAML out.

Rendering a service is Jinja2 text, then this module's ``load_documents``, and, for ``bizcloud
render`` and the API, ``dump_documents``. PyYAML's constructors and representers run in Python
and were two thirds of a render, so:

- **Reading** goes through rapidyaml (C++): parse, emit each document as JSON, ``json.loads``.
  rapidyaml reads plain scalars by YAML 1.2's JSON rules, PyYAML (and kubectl's go-yaml) by YAML
  1.1's: ``yes``, ``on``, ``012``, ``1e3``, ``2001-01-01``, ``~``, ``<<``, anchors and tags
  differ. ``needs_libyaml`` spots anything that may be such a token; that text (and any text
  rapidyaml refuses) is read by libyaml as before, so the objects are always the ones PyYAML
  reads, and a broken template gets libyaml's error with its line. Templates pass every value
  through ``tojson`` (quoted strings), so mostly a template's own literals send it there.
- **Writing** is a small block-style emitter: a string is plain only when it is a word no YAML
  1.1 reader takes for anything but a string (``demo-web``, ``apps/v1``), else a JSON
  double-quoted string with the escapes YAML needs (``tojson``, which templates use too).

Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import ryml
import yaml

__all__ = ["dump_documents", "load_documents", "needs_libyaml", "tojson"]

# A token that YAML 1.1 (PyYAML, go-yaml) and rapidyaml's JSON could read differently, or that
# rapidyaml takes where libyaml refuses, wherever a plain scalar may start (after whitespace, `[`,
# `{`, `,`, `:`). Quoted strings are not skipped: a value holding ` yes` costs that text the slow
# reader, never a different object. Plain words, `true`/`false`/`null` and decimal integer values
# read the same in both. One leading character class, so `re` skips ahead in C between candidates.
_WORDS = (r"(?:y(?:es)?|Y(?:es|ES)?|n(?:o|an)?|N(?:o|O|ull|ULL|aN|AN)?|o(?:n|ff)|O(?:n|N|ff|FF)"
          r"|T(?:rue|RUE)|F(?:alse|ALSE)|inf|I(?:nf|NF|nfinity))")
_RISKY = re.compile(
    r"[\s\[{,:\ufeff]"                            # where a plain scalar may start
    r"(?:(?<=\t)"                                  # a tab (tojson writes \t): the two read tabs apart
    r"|(?=[-+.0-9~=<&*!%@`|>?:#,\]}yYnNoOTtFfiI])"  # what the token must start with to be one of:
    r"(?:[~=<&*!%@`|>?:]"                          # null, value/merge keys, anchors, aliases, tags,
                                                   # directives, block scalars, `? key`, empty keys
    rf"|{_WORDS}[\s,\]}}:]"                        # YAML 1.1 booleans, nulls, inf and nan
    r"|(?:true|false|null)[ \t]*:"                 # keys JSON would take as strings
    r"|(?!-?(?:0|[1-9][0-9]*)[ \t]*[\r\n,\]}\"\\])[-+]?[0-9.]"  # numbers but decimal integer values
    r"|(?<!: )(?:true|false|null|[-+]?[0-9.])[^\s,\]}]*\s*[,}\]]"  # maybe a key with no value: {1}
    r"|(?<=[\s,:])[,\]}]|\#(?<=\S[ ]\#)"          # stray closing brackets, comments inside flows
    r"))")


def needs_libyaml(text: str) -> bool:
    """Whether ``text`` holds a token that YAML 1.1 and JSON rules may read differently. Pure.

    Errs towards ``True``: a false alarm costs speed, never a different object.
    """
    return _RISKY.search(f"\n{text}\n") is not None


def _libyaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream, exactly as PyYAML's safe loader reads them (empty ones as
    ``None``); ``yaml.YAMLError`` (libyaml's, with its mark) when the text is not YAML. Pure."""
    if needs_libyaml(text):
        return _libyaml(text)
    try:
        tree = ryml.parse_in_arena(text.encode("utf-8"))
    except (ryml.ExceptionBasic, UnicodeEncodeError):
        return _libyaml(text)                        # libyaml says what and where
    root = tree.root_id()
    nodes = ryml.children(tree, root) if tree.is_stream(root) else [root]
    docs: list[Any] = []
    for node in nodes:
        js = ryml.emit_json_malloc(tree, node)
        if js is None:                               # no document at all: empty text, comments
            continue
        try:
            docs.append(json.loads(js, strict=False))
        except ValueError:                           # e.g. `+1`, which JSON has no word for
            return _libyaml(text)
    return docs


# Plain (unquoted) only for words every YAML reader takes as that string.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_NOT_PLAIN = frozenset({
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
    "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL",
    "nan", "NaN", "NAN", "inf", "Inf", "INF", "Infinity"})


class _UnrepresentableError(Exception):
    """A value outside JSON's types (a date, bytes…): that document goes through PyYAML."""


# Characters a YAML reader would not take back as they are inside a double-quoted scalar: C1
# controls (NEL is a line break to YAML), the Unicode line/paragraph separators, BOM and
# non-characters. They go as \uXXXX escapes; everything else, astral characters included, goes
# as UTF-8 (Jinja2's own ``tojson`` writes those as surrogate pairs, which YAML refuses).
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_LONGEST_KEY = 1000                                  # YAML allows 1024 characters for a simple key


def tojson(value: Any) -> str:
    """A value as a JSON (so YAML) scalar or collection that reads back exactly. Pure."""
    text = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _string(text: str) -> str:
    return text if _PLAIN.fullmatch(text) and text not in _NOT_PLAIN else tojson(text)


def _float(value: float) -> str:
    """As PyYAML writes floats: YAML 1.1 wants a dot before an exponent."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text


class _Emitter:
    """Block style, lists indented under their key, strings memoised (keys repeat a lot)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._strings: dict[str, str] = {}

    def scalar(self, value: Any) -> str:
        if isinstance(value, str):
            text = self._strings.get(value)
            if text is None:
                text = self._strings[value] = _string(value)
            return text
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return _float(value)
        if isinstance(value, dict):
            return "{}"                                  # only empty ones get here
        if isinstance(value, list):
            return "[]"
        raise _UnrepresentableError(type(value).__name__)

    def node(self, value: Any, indent: int) -> None:
        if isinstance(value, dict) and value:
            self.mapping(value, indent)
        elif isinstance(value, list) and value:
            self.sequence(value, indent)
        else:
            self.lines.append(f"{' ' * indent}{self.scalar(value)}\n")

    def mapping(self, value: dict[Any, Any], indent: int) -> None:
        pad = " " * indent
        for key, item in value.items():
            name = self.scalar(key)
            if len(name) > _LONGEST_KEY:
                raise _UnrepresentableError("a key longer than YAML's simple keys")
            if isinstance(item, dict | list) and item:
                self.lines.append(f"{pad}{name}:\n")
                self.node(item, indent + 2)
            else:
                self.lines.append(f"{pad}{name}: {self.scalar(item)}\n")

    def sequence(self, value: list[Any], indent: int) -> None:
        pad = " " * indent
        for item in value:
            first = len(self.lines)
            self.node(item, indent + 2)                  # then its first line takes the dash
            self.lines[first] = f"{pad}- {self.lines[first][indent + 2:]}"


    def document(self, doc: Any) -> str:
        self.lines = []
        try:
            self.node(doc, 0)
        except _UnrepresentableError:
            return yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)
        return "".join(self.lines)


def dump_documents(docs: Iterable[Any]) -> str:
    """Multi-document YAML that PyYAML and ``kubectl apply -f -`` read back as ``docs``. Pure."""
    emitter = _Emitter()
    return "---\n".join(emitter.document(doc) for doc in docs)
