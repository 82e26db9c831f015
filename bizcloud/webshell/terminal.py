"""``bizcloud shell``: this terminal, in raw mode, on the same WebSocket bridge the console uses.

Keystrokes go out as ``0x00`` frames, the window size as ``0x04`` frames (again on SIGWINCH),
and whatever comes back is written to stdout, BizCloud's own messages included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bizcloud.webshell.errors import BackendUnavailable, ShellError


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size()
    return size.columns, size.lines


async def run_terminal(url: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cols, rows = _size()
    try:
        ws = await connect(f"{url}?cols={cols}&rows={rows}", additional_headers=headers, max_size=1 << 22)
    except InvalidStatus as e:
        body = (e.response.body or b"").decode(errors="replace")
        with contextlib.suppress(ValueError):
            body = json.loads(body).get("detail", body)
        raise ShellError(f"the server refused the shell ({e.response.status_code}): {body}",
                         hint="a token with the right role: BIZCLOUD_TOKEN or `bizcloud users token`") from e
    except OSError as e:
        raise BackendUnavailable(f"the BizCloud server does not answer at {url}: {e}",
                                 hint="start it with `make up` or `bizcloud server`") from e
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    keys: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def on_key() -> None:
        data = os.read(stdin, 65536)
        with contextlib.suppress(asyncio.QueueFull):
            keys.put_nowait(data)

    async def resize() -> None:
        c, r = _size()
        await ws.send(b"\x04" + json.dumps({"cols": c, "rows": r}).encode())

    async def upstream() -> None:
        while (data := await keys.get()):
            await ws.send(b"\x00" + data)

    async def downstream() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                out = message if isinstance(message, bytes) else message.encode()
                os.write(sys.stdout.fileno(), out)

    try:
        if interactive:
            tty.setraw(stdin)
        loop.add_reader(stdin, on_key)
        loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(resize()))
        up = asyncio.create_task(upstream())
        await downstream()
        up.cancel()
    finally:
        loop.remove_reader(stdin)
        loop.remove_signal_handler(signal.SIGWINCH)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        await ws.close()
