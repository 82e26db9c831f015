"""The catalog's domain errors: what the store raises, and what the API turns into 404/409/503.

The store sits between SQL and everything that reads the catalog (the API, the monitor's
subscriber), so it speaks in these instead of SQLAlchemy's exceptions; each is raised ``from`` the
library error it translates, when there is one.
"""

from __future__ import annotations

from bizcloud.errors import BizCloudError

# The names say the outcome, the way routes test for it (``except NotFound``), as HTTP's names do.


class CatalogError(BizCloudError):
    """A catalog operation failed."""


class NotFound(CatalogError):  # noqa: N818
    """The named service, environment or route does not exist."""


class AlreadyExists(CatalogError):  # noqa: N818
    """Creating something whose name (or host + path) is already taken."""


class InUse(CatalogError):  # noqa: N818
    """Deleting something that instances or routes still refer to."""


class CatalogUnavailable(CatalogError):  # noqa: N818
    """The database could not be reached or stayed locked; the caller may retry."""


class WriteBusy(CatalogUnavailable):
    """A write told not to wait found the write lock taken, and did nothing (``apply_events(wait=False)``)."""
