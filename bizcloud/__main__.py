"""`python -m bizcloud`: the CLI.

`python -m bizcloud monitor` with nothing after it (how `make up` and the benches start the
monitor) goes straight to the daemon without building the Typer app: the monitor is CPU-bound
from its start until its backlog is committed, and the CLI's modules (typer, rich, every command's
imports) were 40 ms of that. Anything else, `monitor --help` included, is the CLI as always, and
an error the monitor raises is reported by the CLI's own handler, so output and exit codes match.
"""

import gc
import sys


def _monitor() -> None:
    # The imports below build most of the heap the process will ever have (SQLAlchemy's and
    # pydantic's tables, every class), none of it garbage: cyclic collection during them is 60 ms
    # of rescanning for nothing. `_tune_gc_for_monitor` freezes what they built and turns it back on.
    gc.disable()
    # httpx imports its own command-line client on import when rich, click and pygments are
    # installed (the CLI's dependencies are): 26 ms of the monitor's start for a `main` it never
    # calls. A None entry makes that import fail as if they were missing; httpx then keeps a stub.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from bizcloud.daemons import monitor_main  # noqa: PLC0415
    from bizcloud.errors import BizCloudError  # noqa: PLC0415
    from bizcloud.settings import get_settings  # noqa: PLC0415

    try:
        monitor_main(get_settings())
    except BrokenPipeError:
        sys.exit(0)
    except (BizCloudError, KeyboardInterrupt) as e:
        failure = e
        import typer  # noqa: PLC0415

        from bizcloud.cli import _guard  # noqa: PLC0415

        def reraise() -> None:
            raise failure

        try:
            _guard(reraise)
        except typer.Exit as done:
            sys.exit(done.exit_code)


if sys.argv[1:] == ["monitor"]:
    _monitor()
else:
    from bizcloud.cli import main

    main()
