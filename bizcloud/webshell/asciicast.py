"""Shell sessions recorded as asciicast v2 files, written as they happen, for replay in the console.

Format (https://docs.asciinema.org/manual/asciicast/v2/): a header line (a JSON object: version,
width, height, timestamp, title, env) and then one JSON array per event — ``[seconds, "o", text]``
for output, ``"i"`` for input (who typed what is the audit trail's point) and ``"r"`` for a resize
(``"COLSxROWS"``). Every event goes straight to the file, so a long session costs no memory; bytes
are decoded incrementally, so a UTF-8 character split across two reads stays whole.
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import IO, Any


class Recorder:
    def __init__(self, path: Path, *, cols: int, rows: int, title: str, env: dict[str, str] | None = None,
                 clock: Any = time.monotonic) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._started = clock()
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._decoders = {kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in "oi"}
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(time.time()), "title": title,
                  "env": env or {"TERM": "xterm-256color", "SHELL": "/bin/sh"}}
        self._write(header)

    def output(self, data: bytes) -> None:
        self._event("o", self._decoders["o"].decode(data))

    def input(self, data: bytes) -> None:
        self._event("i", self._decoders["i"].decode(data))

    def resize(self, *, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _event(self, kind: str, text: str) -> None:
        if text and not self._file.closed:
            self._write([round(self._clock() - self._started, 6), kind, text])

    def _write(self, item: Any) -> None:
        self._file.write(json.dumps(item, ensure_ascii=False) + "\n")
        self._file.flush()


def read_cast(path: Path) -> tuple[dict[str, Any], list[tuple[float, str, str]]]:
    """A recording's header and events. Purely computational apart from reading the file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    events = [(float(t), str(k), str(d)) for t, k, d in (json.loads(line) for line in lines[1:] if line)]
    return header, events
