"""The accounts' domain errors; the web layer turns them into 401, 403, 404 and 409."""

from __future__ import annotations

from bizcloud.errors import BizCloudError


class AccountError(BizCloudError):
    """An account operation failed."""


class UserNotFound(AccountError):  # noqa: N818
    """No user of that name."""


class UserExists(AccountError):  # noqa: N818
    """A user of that name exists already."""


class BadCredentials(AccountError):  # noqa: N818
    """Wrong name or password, an unknown or expired token, or a disabled user."""


class InvalidInput(AccountError):  # noqa: N818
    """A user name, role or password that cannot be used."""


class LastAdmin(AccountError):  # noqa: N818
    """The change would leave no enabled admin, and nobody could manage users any more."""
