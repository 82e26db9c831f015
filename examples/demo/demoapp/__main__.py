"""``python3 -m demoapp web|api``: run one of the two sample services."""

from __future__ import annotations

import sys

from demoapp import api, web

ROLES = {"web": web.main, "api": api.main}


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else "web"
    if role not in ROLES:
        print(f"usage: python3 -m demoapp {'|'.join(ROLES)} (not {role!r})", file=sys.stderr)
        return 2
    return ROLES[role]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
