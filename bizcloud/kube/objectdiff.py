"""What a deploy would change, object by object: normalization and the ``kubectl diff``-like text.

Pure half of ``bizcloud.kube.apply.diff``: the I/O side fetches the live object and a server-side
dry-run apply of the rendered one (so defaults, admission and field ownership are the server's,
exactly what a real apply would produce); this module strips what the server changes on every
write or owns itself (resourceVersion, managedFields, status...), decides create / update /
unchanged, and renders a unified diff of the YAML. Secret values never reach the text: they read
``***`` (changed ones ``*** (before)`` / ``*** (after)``), as ``kubectl diff`` shows them.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from enum import StrEnum

import yaml

from bizcloud.kube.client import Obj
from bizcloud.kube.resources import ObjectRef

# Server-written metadata that changes on every write or says nothing about the desired state.
NOISY_METADATA = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink")
NOISY_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",                  # the Deployment controller's counter
    "kubectl.kubernetes.io/last-applied-configuration",   # client-side apply's copy (may hold Secret data)
)
SECRET_FIELDS = ("data", "stringData")


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ObjectDiff:
    """One object's change: ``live`` and ``merged`` are normalized; ``text`` is a unified diff."""

    ref: ObjectRef
    action: Action
    live: Obj | None
    merged: Obj
    text: str


def normalize(obj: Obj) -> Obj:
    """A copy without the fields the server rewrites on its own. Purely computational.

    Drops ``status``, the metadata in ``NOISY_METADATA`` and the annotations in
    ``NOISY_ANNOTATIONS`` (and ``annotations`` itself when nothing is left), so two reads of an
    object nobody changed compare equal.
    """
    clean = copy.deepcopy(obj)
    clean.pop("status", None)
    metadata = clean.get("metadata")
    if isinstance(metadata, dict):
        for field in NOISY_METADATA:
            metadata.pop(field, None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            for name in NOISY_ANNOTATIONS:
                annotations.pop(name, None)
            if not annotations:
                del metadata["annotations"]
    return clean


def decide(live: Obj | None, merged: Obj) -> Action:
    """create when nothing is live, unchanged when the normalized objects are equal. Pure."""
    if live is None:
        return Action.CREATE
    return Action.UNCHANGED if normalize(live) == normalize(merged) else Action.UPDATE


def mask_secrets(live: Obj | None, merged: Obj) -> tuple[Obj | None, Obj]:
    """Copies with Secret values replaced by stars, changed ones marked. Purely computational."""
    if merged.get("kind") != "Secret":
        return live, merged
    live, merged = copy.deepcopy(live), copy.deepcopy(merged)
    for field in SECRET_FIELDS:
        before = (live or {}).get(field) or {}
        after = merged.get(field) or {}
        for key in set(before) | set(after):
            changed = before.get(key) != after.get(key)
            if key in before:
                before[key] = "*** (before)" if changed else "***"
            if key in after:
                after[key] = "*** (after)" if changed else "***"
    return live, merged


def render(obj: Obj | None) -> list[str]:
    """The object as block YAML lines (keys in the order the API gives them). Pure."""
    if obj is None:
        return []
    text: str = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
    return text.splitlines(keepends=True)


def unified(ref: ObjectRef, live: Obj | None, merged: Obj) -> str:
    """A ``kubectl diff``-style unified diff of the normalized, Secret-masked YAML. Pure."""
    before, after = mask_secrets(normalize(live) if live is not None else None, normalize(merged))
    lines = difflib.unified_diff(render(before), render(after), fromfile=f"live/{ref}",
                                 tofile=f"merged/{ref}")
    return "".join(lines)


def object_diff(live: Obj | None, merged: Obj) -> ObjectDiff:
    """The ObjectDiff of one live object (None: absent) and its dry-run result. Pure."""
    ref = ObjectRef.of(merged)
    action = decide(live, merged)
    text = "" if action is Action.UNCHANGED else unified(ref, live, merged)
    return ObjectDiff(ref, action, normalize(live) if live is not None else None, normalize(merged), text)


__all__ = ["Action", "ObjectDiff", "decide", "mask_secrets", "normalize", "object_diff", "unified"]
