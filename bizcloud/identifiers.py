"""The one place that decides which external names may reach SQL, iptables or ZooKeeper paths.

Service names, MySQL users and databases, privileges, hosts, IPs, ports and Dubbo interfaces
come from users (configs, the API, pod labels) and end up inside SQL statements, iptables rules
and ZooKeeper paths. Each is checked here against a strict pattern and refused with an error
that names the field and says what a valid value looks like; code that builds statements only
ever sees values that passed. Quoting (SQL literals, identifiers) is still done by the one
helper of each executor: validation and quoting are two locks, not one.

Every check returns the normalized value, so it can be a pydantic ``AfterValidator``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from bizcloud.errors import BizCloudError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
# MySQL/MariaDB user names: at most 32 characters in MySQL (80 in MariaDB); we keep to what both
# accept unquoted-safe: a letter or underscore, then letters, digits and underscores.
_MYSQL_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_MYSQL_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Java identifiers joined by dots: a Dubbo interface (a Java type's full name).
_JAVA_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$")
MAX_INTERFACE_LENGTH = 200

# The database-level privileges a service may be granted; anything that administers the server
# (GRANT OPTION, SUPER, FILE, PROCESS, RELOAD, SHUTDOWN …) is refused on purpose.
MYSQL_PRIVILEGES = frozenset({
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "INDEX", "ALTER", "REFERENCES",
    "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "CREATE VIEW", "SHOW VIEW",
    "CREATE ROUTINE", "ALTER ROUTINE", "EVENT", "TRIGGER",
})


class InvalidNameError(BizCloudError, ValueError):
    """A name that would be unsafe (or wrong) in SQL, iptables or a ZooKeeper path.

    A ValueError too, so pydantic reports it as a validation error at the field's location.
    """

    def __init__(self, field: str, value: object, expected: str) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "…"
        super().__init__(f"{field}: {shown} is not valid", hint=expected)
        self.field = field

    def __str__(self) -> str:  # what pydantic shows at the field's location: the fix included
        return self.one_line()


def service_name(value: str, field: str = "name") -> str:
    """A service or environment name: a DNS label (it becomes labels, namespaces, secret names)."""
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise InvalidNameError(field, value, "use a DNS label: lower-case letters, digits and '-', at most "
                                             "63, starting and ending with a letter or digit (e.g. demo-api)")
    return value


def mysql_user(value: str, field: str = "user") -> str:
    if not isinstance(value, str) or not _MYSQL_USER.match(value):
        raise InvalidNameError(field, value, "use letters, digits and '_', starting with a letter or '_', "
                                             "at most 32 characters (e.g. demo_api)")
    return value


def mysql_database(value: str, field: str = "database") -> str:
    if not isinstance(value, str) or not _MYSQL_DATABASE.match(value):
        raise InvalidNameError(field, value, "use letters, digits and '_', starting with a letter or '_', "
                                             "at most 64 characters (e.g. demo)")
    return value


def mysql_privileges(values: Iterable[str], field: str = "privileges") -> frozenset[str]:
    """Upper-cased, de-duplicated database privileges; ALL and administrative ones are refused."""
    result = set()
    for value in values:
        normalized = " ".join(str(value).upper().split())
        if normalized not in MYSQL_PRIVILEGES:
            raise InvalidNameError(field, value, "name database privileges one by one, from: "
                                                 + ", ".join(sorted(MYSQL_PRIVILEGES)))
        result.add(normalized)
    if not result:
        raise InvalidNameError(field, [], "grant at least one privilege, e.g. [SELECT]")
    return frozenset(result)


def ip_address(value: str, field: str = "ip") -> str:
    """An IPv4 or IPv6 address in its canonical text form (no names, no CIDR, no zone)."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidNameError(field, value, "give one IP address such as 10.88.0.5") from None
    # ipaddress accepts an IPv6 zone ("fe80::1%eth0") made of any characters, spaces and newlines
    # included, and keeps it in str(): that would carry text into an iptables-restore line.
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise InvalidNameError(field, value, "give the address without a zone (no '%…'), e.g. fd00::5")
    return str(address)


def host(value: str, field: str = "host") -> str:
    """An IP address or a DNS host name (lower case)."""
    try:
        return ip_address(value, field)
    except InvalidNameError:
        pass
    if isinstance(value, str) and _HOSTNAME.match(value.lower()):
        return value.lower()
    raise InvalidNameError(field, value, "give an IP address or a DNS host name such as db1.example.com")


def port(value: int, field: str = "port") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidNameError(field, value, "give a TCP port between 1 and 65535")
    return value


def interface(value: str, field: str = "interface") -> str:
    """A Dubbo interface: a Java type's full name."""
    if (not isinstance(value, str) or not value or len(value) > MAX_INTERFACE_LENGTH
            or not _JAVA_NAME.match(value)):
        raise InvalidNameError(field, value, "give a Java type name: letters, digits, _ and $, joined by "
                                             f"dots, at most {MAX_INTERFACE_LENGTH} characters "
                                             "(e.g. com.example.DemoApi)")
    return value


# Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource): a decimal number with an
# optional binary (Ki…Ei), decimal (m, k, M…E) or exponent suffix.
_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
# An image reference as the container runtime reads it: [registry[:port]/]path[:tag][@digest].
_IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
                    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def cpu_quantity(value: str, field: str = "cpu") -> str:
    """A CPU amount; sub-millicore amounts are refused, since Kubernetes would round them away."""
    if not isinstance(value, str) or not _QUANTITY.match(value) or value.endswith(("Ki", "Mi", "Gi")):
        raise InvalidNameError(field, value, "give CPU in cores or millicores, e.g. 500m, 1 or 1.5")
    return value


def memory_quantity(value: str, field: str = "memory") -> str:
    if not isinstance(value, str) or not _QUANTITY.match(value) or value.endswith("m"):
        raise InvalidNameError(field, value, "give memory in bytes with a suffix, e.g. 512Mi or 2Gi")
    return value


def image(value: str, field: str = "image") -> str:
    if not isinstance(value, str) or len(value) > 255 or not _IMAGE.match(value):
        raise InvalidNameError(field, value, "give an image reference such as demo:v2 or "
                                             "registry.example:5000/team/demo:v2")
    return value
