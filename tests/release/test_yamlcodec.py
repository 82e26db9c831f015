"""Manifest text ↔ objects: the fast reader reads what PyYAML reads, the writer writes what it reads back."""

from __future__ import annotations

import datetime
import math
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from bizcloud.configcenter.documents import read
from bizcloud.configcenter.schema import ServiceConfig
from bizcloud.release.params import params_for
from bizcloud.release.render import Renderer, TemplateError
from bizcloud.release.yamlcodec import dump_documents, load_documents, needs_libyaml, tojson

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "demo" / "bizcloud.yaml"


def libyaml(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def outcome(read_: Any, text: str) -> Any:
    """What a reader makes of ``text``: the documents, or that it refused it."""
    try:
        return read_(text)
    except yaml.YAMLError:
        return "refused"


# --- reading ------------------------------------------------------------------------------------

# Plain scalars YAML 1.1 (PyYAML, kubectl's go-yaml) reads otherwise than JSON rules, and the YAML
# features a JSON view loses: each must send the text to libyaml.
@pytest.mark.parametrize("text", [
    "a: yes\n", "a: On\n", "a: off\n", "a: y\n", "a: NO\n", "a: True\n", "a: FALSE\n", "a: Null\n",
    "a: ~\n", "a: 012\n", "a: 0o10\n", "a: 0x1f\n", "a: 1_000\n", "a: +1\n", "a: 1e3\n", "a: 1.5\n",
    "a: .inf\n", "a: -.inf\n", "a: .nan\n", "a: NaN\n", "a: Infinity\n", "a: 1:30\n", "a: 2001-12-14\n",
    "a: 2001-12-14t21:59:43.10-05:00\n", "10: x\n", "{10: x}\n", "[yes, no]\n", "{a: on}\n",
    "a: &x 1\nb: *x\n", "base: &b {k: 1}\nc:\n  <<: *b\n", "a: !!str 5\n", "%YAML 1.1\n---\na: 1\n",
    "a: |\n  text\n", "a: >-\n  folded\n  text\n", "? a\n: b\n", "a: =\n", "a: 1.\n", "a: .5\n",
    "true: 1\n", "{null: 1}\n", "false : x\n", "10 : x\n", ": empty key\n",
    "{a: 1, null, 2}\n", "{a: 1,\n  true\n}\n", "[1, 2]\n", "a: b # c\n", "[a, b ]\n",
])
def test_what_json_rules_would_misread_goes_to_libyaml(text: str) -> None:
    assert needs_libyaml(text)
    assert outcome(load_documents, text) == outcome(libyaml, text)


# Our templates' output and its look-alikes: read on the fast path, the same objects.
@pytest.mark.parametrize("text", [
    "a: word\nb: 12\nc: true\nd: false\ne: null\nf:\ng: -3\nk: -0\n",
    'h: [x, "0", "7"]\ni: {}\nj: []\nl: \'it\'\'s\'\nm: a b  c\n',
    "- {name: none, port: 1}\n- tcpSocket: {port: \"soa\"}\n",
    "---\n---\napiVersion: v1\nkind: Namespace\n---\n",
    "kind: Service\nspec:\n  clusterIP: None\n  ports:\n    - {name: \"http\", port: 8080}\n",
    "# a remark\na: b\n  # and after a value\n",
    'a: "x: z, not a comment#"\n"quoted key": [a, -b, "3"]\n',
    "", "# only a comment\n", "---\n",
])
def test_plain_output_reads_on_the_fast_path_as_pyyaml_reads_it(text: str) -> None:
    assert not needs_libyaml(text)
    assert load_documents(text) == libyaml(text)


@pytest.mark.parametrize("value", [
    "hi 😀", "𝄞 clef", "a\x85b", "line\u2028sep", "a\u2029b", "\x00\x1f\x7f\x9f", "\x1b esc", "tab\there",
    "'\"\\ <&>", "\ufeffbom", "yes", "0x10", "null", "~", "- item", "key: value", "new\nline", "\r\n",
    "trail  ", " lead", "/slash", "\U0010ffff", "\u00a0nbsp", "#hash", "a #b", "{[,]}", "*alias", "&a",
])
def test_any_value_through_tojson_reads_back_exactly(value: str) -> None:
    text = f"a: {tojson(value)}\n{tojson(value)}: b\nc: [{tojson(value)}, {{k: {tojson(value)}}}]\n"
    assert load_documents(text) == libyaml(text) == [{"a": value, value: "b", "c": [value, {"k": value}]}]


PLAIN = ["a", "demo-web", "apps/v1", "1", "0", "-1", "true", "false", "null", "None", '"x"', '"yes"',
         '"1"', "'y'", '""', "a b", '"a: b"']
RISKY = ["07", "1.5", "1e3", "yes", "no", "on", "y", "n", "~", "Infinity", "nan", "2001-01-01", "1:20",
         "0x10", "*x", "&x y", "!!str 1", "<<", "=", ".5", "+3", "1_0", "Null"]


def _token(rng: random.Random) -> str:
    return rng.choice(RISKY if rng.random() < 0.1 else PLAIN)


def _random_document(rng: random.Random, depth: int = 0) -> str:
    """A small YAML-ish document from tricky tokens, in block and flow style (sometimes invalid)."""
    lines: list[str] = []
    for _ in range(rng.randint(1, 4)):
        key = _token(rng)
        roll = rng.random()
        if roll < 0.2 and depth < 2:
            inner = _random_document(rng, depth + 1).splitlines()
            lines.append(f"{key}:")
            lines.extend(f"  {line}" for line in inner)
        elif roll < 0.4:
            items = ", ".join(_token(rng) for _ in range(rng.randint(0, 3)))
            lines.append(f"{key}: [{items}]" if rng.random() < 0.5 else f"{key}: {{k: {items or 'v'}}}")
        elif roll < 0.5:
            lines.append(f"- {_token(rng)}")
        else:
            lines.append(f"{key}: {_token(rng)}" + (" # note" if rng.random() < 0.1 else ""))
    return "\n".join(lines) + "\n"


def test_random_documents_read_as_pyyaml_reads_them_or_are_refused_by_both() -> None:
    rng = random.Random(7)
    fast = 0
    for _ in range(4000):
        text = "---\n".join(_random_document(rng) for _ in range(rng.randint(1, 3)))
        assert outcome(load_documents, text) == outcome(libyaml, text), text
        fast += not needs_libyaml(text)
    assert fast > 200                       # the fast path was taken too, not only the fallback


def _sample(name: str) -> ServiceConfig:
    config = {d.name: d.config for d in read(SAMPLE.read_text())}[name]
    assert isinstance(config, ServiceConfig)
    return config


@pytest.mark.parametrize("kind", ["stateless", "stateful"])
def test_the_shipped_templates_read_on_the_fast_path(kind: str) -> None:
    renderer = Renderer()
    config = ServiceConfig(**{**_sample("demo-web").model_dump(), "type": kind,
                              "files": [{"name": "app.yaml", "mount": "/etc/a", "content": "a: 1\n"}]})
    context = params_for(config, "dev", image="demo:v1", gray_image="demo:v2").template_context()
    for template in renderer.template_set(kind):
        text = template.render(context)
        assert not needs_libyaml(text), f"{template.name} sends its output to libyaml"
        assert load_documents(text) == libyaml(text)


def test_a_template_that_renders_broken_yaml_names_the_rendered_line(tmp_path: Path) -> None:
    (tmp_path / "stateless").mkdir()
    (tmp_path / "stateless" / "10-x.yaml.j2").write_text(
        "kind: ConfigMap\nmetadata:\n  name: {{ service | tojson }}\n data: {a: 1\n")
    with pytest.raises(TemplateError, match=r"10-x\.yaml\.j2 renders invalid YAML \(rendered line 4\)"):
        Renderer(tmp_path).render(params_for(_sample("demo-web"), "dev", image="demo:v1"))


# --- writing ------------------------------------------------------------------------------------

TRICKY: list[Any] = [
    "hi 😀", "a\x85b", "line\u2028sep", "\x00\x1f\x7f\x9f", "'\"\\ <&>", "\ufeffbom", "yes", "y", "N",
    "on", "0x10", "012", "1e3", "1_000", "1:20", "2001-01-01", "null", "true", "~", "=", "<<", "- item",
    "key: value", "a #b", "", " ", "new\nline\n", "x" * 2000, "nan", ".inf", "@at", "`tick", "%pct",
    0, -7, 2**70, 1.5, 1e20, -1e-7, float("inf"), True, False, None, {}, [], [[1, [2]], {}], {"k": []},
]


def test_every_value_reads_back_as_it_was_written() -> None:
    doc = {"values": TRICKY, "as keys": {v: i for i, v in enumerate(TRICKY) if isinstance(v, str)},
           2: "int key", None: "null key", False: "bool key", "x" * 1500: "long key"}
    text = dump_documents([doc, {"second": [{"a": 1, "b": [{"c": None}]}]}, ["top", "list"]])
    assert libyaml(text) == [doc, {"second": [{"a": 1, "b": [{"c": None}]}]}, ["top", "list"]]


def test_nan_reads_back_as_nan() -> None:
    (back,) = libyaml(dump_documents([{"x": math.nan}]))
    assert math.isnan(back["x"])


def test_a_value_json_has_no_type_for_goes_through_pyyaml() -> None:
    doc = {"when": datetime.date(2026, 1, 2), "n": 1}
    assert libyaml(dump_documents([doc, {"a": "b"}])) == [doc, {"a": "b"}]


def test_words_stay_plain_and_anything_else_is_quoted() -> None:
    text = dump_documents([{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {
        "replicas": 2, "args": ["web", "yes", "y"], "image": "demo:v1", "cpu": "10m", "empty": {}}}])
    assert text == ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  args:\n    - web\n"
                    '    - "yes"\n    - "y"\n  image: "demo:v1"\n  cpu: "10m"\n  empty: {}\n')


def test_no_documents_is_empty_text() -> None:
    assert dump_documents([]) == ""
