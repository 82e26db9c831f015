"""The config center's own errors: a refused config (with every problem, each naming its field) and a miss.

Raised by the store and the YAML reader, turned into 422/404 by the API and into red lines by the
CLI, so a refused upload reads the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

from bizcloud.errors import BizCloudError


class ConfigError(BizCloudError):
    """A config that was refused; ``problems`` holds one line per fault, each starting with its field path."""

    def __init__(self, message: str, problems: Sequence[str], *, hint: str = "") -> None:
        super().__init__(message, hint=hint or "fix the fields named above and apply again")
        self.problems = list(problems)

    def one_line(self) -> str:
        return "; ".join([self.message, *self.problems]) + (f" — {self.hint}" if self.hint else "")


class ConfigNotFound(BizCloudError):  # noqa: N818
    """No such config (or no such version of it)."""
