"""Who may change which config: the config center's routes' permission check (the web layer's side).

``AuditGuard`` has already refused anonymous callers and viewers; this adds the finer rules,
through the same ``decide`` as the catalog's routes. The inventory (where databases and
firewalled hosts live) is the platform's: ops. A service config is part of its service: its
owners (the catalog's ``owner`` field) may change it, and a developer may write the first config
of a service the catalog does not know yet, as they may create a service.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from bizcloud.accounts.roles import Action, owners_of
from bizcloud.catalog.errors import CatalogError
from bizcloud.catalog.store import CatalogStore
from bizcloud.configcenter.api import documents_in_body
from bizcloud.configcenter.documents import INVENTORY, Document
from bizcloud.web.auth import MUTATING, AccountsDep, check, require_user


def _owners(catalog: CatalogStore, service: str) -> frozenset[str] | None:
    """The service's owners, or None when the catalog has no such service."""
    try:
        return owners_of(catalog.get_service(name=service).owner)
    except CatalogError:
        return None


async def guard_configs(request: Request, accounts: AccountsDep,
                        docs: Annotated[list[Document], Depends(documents_in_body)]) -> None:
    if request.method not in MUTATING:
        return
    user = await require_user(request, accounts)
    names = [d.name for d in docs] if request.method == "PUT" else [str(request.path_params.get("name", ""))]
    catalog: CatalogStore = request.app.state.catalog_store
    for name in names:
        if name == INVENTORY:
            check(request, user, Action.MANAGE_PLATFORM)
            continue
        owners = await asyncio.to_thread(_owners, catalog, name)
        if owners is None:
            check(request, user, Action.CREATE_SERVICE)
        else:
            check(request, user, Action.EDIT_SERVICE, service=name, owners=owners)
