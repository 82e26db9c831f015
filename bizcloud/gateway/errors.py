"""The gateway's errors: nginx would not start, a push was refused, the catalog could not be read."""

from __future__ import annotations

from bizcloud.errors import BizCloudError


class GatewayError(BizCloudError):
    """The gateway (its nginx, its syncer) failed in a way the user can act on."""
