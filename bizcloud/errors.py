"""BizCloud's own exceptions. The CLI turns them into one clear line: what is wrong, what to do.

Code below the CLI raises these (always ``from`` the library error it translates) instead of
printing, so the same failure reads the same way from the command line, the API and the tests.
"""

from __future__ import annotations


class BizCloudError(Exception):
    """A failure the user can act on. ``hint`` says what to do about it."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class PrerequisiteError(BizCloudError):
    """Something the host must provide is missing: a tool, root, a free port."""


class BuildError(BizCloudError):
    """Building a binary or an image failed."""


class ClusterError(BizCloudError):
    """The local cluster could not be started, stopped or reached."""


class KubeError(BizCloudError):
    """A call to the Kubernetes API (or kubectl) failed."""
