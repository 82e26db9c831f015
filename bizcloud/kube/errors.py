"""The Kubernetes API's failures as BizCloud exceptions: the boundary between httpx and our code.

Everything above ``bizcloud.kube`` (informer consumers, the release side, the lease users) reacts
to *kinds* of failure — the object is gone, someone else wrote first, our resourceVersion is too
old, the API server cannot be reached — never to HTTP status codes or httpx exception types.
The client raises these ``from`` the error it translates, so the original stays in the chain.
"""

from __future__ import annotations

from typing import Any

from bizcloud.errors import KubeError


class KubeApiError(KubeError):
    """The API server answered, and the answer was a failure (a ``Status`` object)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"Kubernetes API {status} {reason}: {message}".rstrip(": "))
        self.status = status
        self.reason = reason
        self.api_message = message

    @classmethod
    def from_status(cls, status: int, body: Any) -> KubeApiError:
        """The most specific subclass for a status code and its ``Status`` body (if it is one)."""
        reason, message = "", ""
        if isinstance(body, dict):
            reason = str(body.get("reason") or "")
            message = str(body.get("message") or "")
            status = int(body.get("code") or status)
        kind = _BY_STATUS.get(status, KubeApiError)
        return kind(status, reason, message)


class NotFound(KubeApiError):  # noqa: N818 - named after the API's own reasons
    """404: the object (or its namespace, or the resource type) does not exist."""


class Conflict(KubeApiError):  # noqa: N818 - named after the API's own reasons
    """409: another writer changed the object first (stale resourceVersion) or it already exists."""


class Gone(KubeApiError):  # noqa: N818 - named after the API's own reasons
    """410: the resourceVersion is older than the history the server keeps; list again."""


class KubeUnavailable(KubeError):  # noqa: N818 - named after the API's own reasons
    """No answer from the API server: refused, reset, timed out, or a broken stream."""


_BY_STATUS: dict[int, type[KubeApiError]] = {404: NotFound, 409: Conflict, 410: Gone}

__all__ = ["Conflict", "Gone", "KubeApiError", "KubeUnavailable", "NotFound"]
