"""The dependency graph as a picture: the config center's Graphviz text, drawn by ``dot -Tsvg``.

Sits between the config center's graph (``Graph.to_dot``, the same text ``bizcloud graph
--format dot`` prints) and the console's pages, which embed the SVG inline. Drawing on the
server keeps the console free of a graph-layout library in the browser: one Debian package
(graphviz, installed by ``make setup``), the layout people already get from the CLI, and a
picture that is plain SVG (links, text selectable, nothing to run). Service nodes link to their
console page (Graphviz ``URL`` attributes, added after the nodes' own declarations); the
page's own service is highlighted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from urllib.parse import quote

from bizcloud.configcenter.graph import Graph

DOT_TIMEOUT_S = 15.0
HIGHLIGHT = "#ffe8a3"
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)  # the XML declaration, DOCTYPE and comments before <svg>


@dataclass(frozen=True)
class Picture:
    """The SVG to embed, or, when it could not be drawn, the dot text and why."""

    svg: str | None
    dot: str
    problem: str | None = None


def linked_dot(graph: Graph, *, highlight: str | None = None) -> str:
    """``graph.to_dot()`` with a link on every service node (and a fill on ``highlight``).

    Purely computational. Graphviz merges a node's later attribute statements into its first one,
    so the config center's text stays as it is and only gains lines before its closing brace.
    """
    lines = []
    for node in graph.nodes:
        if node.kind != "service":
            continue
        attrs = [f"URL={_quote('/console/services/' + quote(node.name, safe=''))}", 'target="_top"']
        if node.name == highlight:
            attrs += ["style=filled", f"fillcolor={_quote(HIGHLIGHT)}"]
        lines.append(f"  {_quote(node.id)} [{', '.join(attrs)}];")
    text = graph.to_dot().rstrip()
    assert text.endswith("}"), "to_dot() ends with the graph's closing brace"
    return "\n".join([text[:-1].rstrip(), *lines, "}"]) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inline_svg(document: str) -> str:
    """The ``<svg>`` element of ``dot -Tsvg``'s output, to embed in HTML. Purely computational."""
    return _PROLOG.sub("", document, count=1).strip()


async def draw(graph: Graph, *, highlight: str | None = None) -> Picture:
    """Run ``dot -Tsvg`` on the graph; a missing or failing Graphviz is a problem to show, not a 500."""
    dot = linked_dot(graph, highlight=highlight)
    executable = shutil.which("dot")
    if executable is None:
        return Picture(None, dot, "Graphviz's `dot` is not installed (`make setup` installs graphviz)")
    proc = await asyncio.create_subprocess_exec(executable, "-Tsvg", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(dot.encode()), DOT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Picture(None, dot, f"`dot -Tsvg` took longer than {DOT_TIMEOUT_S:.0f} s")
    if proc.returncode != 0:
        return Picture(None, dot, f"`dot -Tsvg` failed: {err.decode(errors='replace').strip()[:500]}")
    return Picture(inline_svg(out.decode()), dot)
