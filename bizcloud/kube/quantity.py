"""Kubernetes resource quantities as numbers: ``500m`` == ``0.5``, ``1Gi`` == ``1024Mi``.

The API server rewrites quantities into its canonical form (``1000m`` comes back as ``1``), so
comparing what we asked for with what a pod reports needs their values, not their text; and
scaling a limit in step with its request needs arithmetic. Validation of user input (which
suffixes a CPU or a memory amount may carry) is ``bizcloud.identifiers``'s; this module only
reads values and writes canonical ones. Purely computational throughout.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

from bizcloud.errors import BizCloudError

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")
_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))


def parse(text: str | int | float, *, field: str = "quantity") -> Decimal:
    """The value of a quantity (``"250m"`` -> 0.25, ``"64Mi"`` -> 67108864)."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise BizCloudError(f"{field}: {text!r} is not a Kubernetes quantity",
                            hint="write e.g. 500m or 2 for CPU, 512Mi or 2Gi for memory")
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def format_cpu(value: Decimal) -> str:
    """Cores, rounded up to a whole millicore: 0.25 -> ``250m``, 2 -> ``2``."""
    millis = (value * 1000).to_integral_value(rounding=ROUND_CEILING)
    return str(int(millis // 1000)) if millis % 1000 == 0 else f"{int(millis)}m"


def format_memory(value: Decimal) -> str:
    """Bytes, rounded up to a whole byte, with the largest exact binary suffix: ``192Mi``."""
    size = int(value.to_integral_value(rounding=ROUND_CEILING))
    for suffix, bits in _BINARY:
        if size and size % (1 << bits) == 0:
            return f"{size >> bits}{suffix}"
    return str(size)


def format_resource(resource: str, value: Decimal) -> str:
    """``cpu`` in cores/millicores, anything else (memory) in bytes."""
    return format_cpu(value) if resource == "cpu" else format_memory(value)


__all__ = ["format_cpu", "format_memory", "format_resource", "parse"]
