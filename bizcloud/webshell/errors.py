"""What can go wrong opening a shell; the bridge writes these into the terminal as one clear line."""

from __future__ import annotations

from bizcloud.errors import BizCloudError


class ShellError(BizCloudError):
    """A shell could not be opened or went away."""


class TargetGone(ShellError):  # noqa: N818
    """The pod, container or process is not there (never was, or was deleted)."""


class BackendUnavailable(ShellError):  # noqa: N818
    """The container runtime or the API server did not answer."""


class ClientStalled(ShellError):  # noqa: N818
    """The client stopped reading the terminal's output; the session is closed rather than buffered."""
