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
    """The client stopped reading the terminal's output; the session is closed rather than buffered.

    ``close_code`` goes in the WebSocket close frame, the message as its reason (at most 123
    bytes), so the console can say why even when the last line in the terminal did not arrive.
    """

    close_code = 4001

    @classmethod
    def not_reading(cls, seconds: float) -> ClientStalled:
        return cls(f"session closed: the client stopped reading for {seconds:g} s")


class ClientUnresponsive(ClientStalled):
    """The client left a WebSocket ping unanswered past the ping timeout (gone, frozen, or not
    reading its socket at all); found by the server's WebSocket protocol, not by the bridge."""

    close_code = 4002

    @classmethod
    def no_pong(cls, seconds: float) -> ClientUnresponsive:
        return cls(f"session closed: the client did not answer pings for {seconds:g} s")
