"""The iptables executor: TCP grants become ACCEPT rules in a chain BizCloud owns on each firewalled host.

Where it sits: the planner asks for ``TargetPlan(kind=tcp, target=<host name>, desired=…)``; this
module reads the host's ``BIZCLOUD-AUTHZ`` chain back (``iptables-save``), renders the whole chain
the plan wants, and replaces it in one ``iptables-restore --noflush`` transaction through the host's
backend (``firewall_backends``: local, ssh or salt). Nothing outside that chain is touched, except
one unconditional ``-A INPUT -j BIZCLOUD-AUTHZ`` jump, inserted first in ``INPUT`` when missing.

The chain, for ``ports: [6379, 7000]`` and two grants, in this order (loopback first, then one
block per port, sources sorted)::

    -A BIZCLOUD-AUTHZ -i lo -j RETURN
    -A BIZCLOUD-AUTHZ -s 10.88.0.5/32 -p tcp -m tcp --dport 6379 -j ACCEPT
    -A BIZCLOUD-AUTHZ -s 10.88.0.7/32 -p tcp -m tcp --dport 6379 -j ACCEPT
    -A BIZCLOUD-AUTHZ -p tcp -m tcp --dport 6379 -j DROP
    -A BIZCLOUD-AUTHZ -p tcp -m tcp --dport 7000 -j DROP

Traffic to other ports falls off the end of the chain and goes on through ``INPUT`` as before.
The lines are written exactly as ``iptables-save`` prints them, so "already converged" is a
comparison of lines and a converged host is not written to at all.

Why the chain is declared *and* flushed: with ``--noflush``, iptables 1.8.9 (nf_tables) and the
legacy backend both flush a user chain that the input declares (``:BIZCLOUD-AUTHZ - [0:0]``) —
checked on this machine — but that is an implementation detail, so an explicit ``-F`` follows;
both happen inside the one ``*filter … COMMIT`` transaction, so no packet ever sees a half-built
chain, and a refused restore leaves the previous chain in place.

IPv6: sources with IPv6 addresses go to ``ip6tables`` (``/128``), IPv4 ones to ``iptables``
(``/32``). Both families' chains are converged on every host, so the protected ports are
dropped over IPv6 too and cannot be reached around the IPv4 rules.

The jump is found by parsing ``iptables-save`` (which the converge reads anyway) rather than a
separate ``iptables -C INPUT -j BIZCLOUD-AUTHZ`` round trip: same answer, one ssh/salt call fewer.
More than one unconditional jump (inserted by hand) is folded back to one with ``-D``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bizcloud import identifiers
from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.authz.firewall_backends import FirewallBackend, default_backends
from bizcloud.authz.grants import Converged, Grant, Kind, TargetPlan, TcpAccess
from bizcloud.configcenter.schema import FirewalledHost, Inventory
from bizcloud.errors import BizCloudError

log = logging.getLogger(__name__)

CHAIN = "BIZCLOUD-AUTHZ"
JUMP = f"-A INPUT -j {CHAIN}"
# The host's own processes reach its ports over loopback (health checks, local clients): never ours.
LOOPBACK = f"-A {CHAIN} -i lo -j RETURN"
RESTORE_WAIT_SECONDS = 10  # ``-w``: wait for the xtables lock held by another tool instead of failing

Source = tuple[str, int]  # (source ip, tcp port): one ACCEPT


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @property
    def prefix(self) -> int:
        return 32 if self is Family.IPV4 else 128

    @property
    def save(self) -> str:
        return "iptables-save" if self is Family.IPV4 else "ip6tables-save"

    @property
    def restore(self) -> str:
        return "iptables-restore" if self is Family.IPV4 else "ip6tables-restore"


class FirewallPlanError(BizCloudError, ValueError):
    """A plan the host cannot hold (unknown host, a port it does not protect): a planner or
    inventory problem, not worth a retry until the inventory or the config changes."""

    def __str__(self) -> str:  # what a log line or a journal entry shows: the fix included
        return self.one_line()


def family_of(ip: str) -> Family:
    """The family of a (validated) address; refuses anything that is not one IP address."""
    address = ipaddress.ip_address(identifiers.ip_address(ip, "subject_ip"))
    return Family.IPV4 if address.version == 4 else Family.IPV6


# --- rendering (pure) ---------------------------------------------------------------------------

def sources(host: FirewalledHost, grants: Iterable[Grant], *, name: str = "host") -> frozenset[Source]:
    """The (ip, port) pairs ``grants`` ask for on ``host``, every name re-validated.

    Purely computational. Raises ``InvalidNameError`` for an address or port that is not one, and
    ``FirewallPlanError`` for a grant of another kind or a port ``host`` does not protect.
    """
    result = set()
    for grant in grants:
        if grant.kind is not Kind.TCP or not isinstance(grant.detail, TcpAccess):
            raise FirewallPlanError(f"{name}: {grant.text()} is not a TCP grant",
                                    hint="send only tcp grants to the iptables executor")
        ip = identifiers.ip_address(grant.subject_ip, "subject_ip")
        port = identifiers.port(grant.detail.port, "port")
        if port not in host.ports:
            raise FirewallPlanError(
                f"{name}: port {port} (granted to {ip}) is not protected on this host",
                hint=f"its ports are {', '.join(map(str, host.ports))}; add {port} to the inventory's "
                     "hosts.<name>.ports or fix the service's tcp dependency")
        result.add((ip, port))
    return frozenset(result)


def chain_rules(host: FirewalledHost, granted: Iterable[Source], *, family: Family) -> tuple[str, ...]:
    """The chain's ``-A`` lines, as ``iptables-save`` prints them: loopback returns, then per
    protected port (ascending) its ACCEPTs (sources ascending) and its DROP. Sources of the other
    family are refused.

    Purely computational; ``granted`` must already be validated (``sources``).
    """
    by_port: dict[int, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for ip, port in granted:
        if family_of(ip) is not family:
            raise FirewallPlanError(f"subject_ip: {ip} is not an {family} address",
                                    hint="split sources by family_of() before rendering")
        by_port.setdefault(port, []).append(ipaddress.ip_address(ip))
    lines = [LOOPBACK]
    for port in sorted(set(host.ports)):
        for address in sorted(by_port.get(port, ())):
            lines.append(f"-A {CHAIN} -s {address}/{family.prefix} -p tcp -m tcp --dport {port} -j ACCEPT")
        lines.append(f"-A {CHAIN} -p tcp -m tcp --dport {port} -j DROP")
    return tuple(lines)


def render_chain(host: FirewalledHost, grants: Iterable[Grant], *, family: Family = Family.IPV4,
                 jumps: int = 0) -> str:
    """The ``iptables-restore --noflush`` input that makes ``BIZCLOUD-AUTHZ`` hold exactly ``grants``.

    ``jumps`` is how many unconditional ``INPUT -> BIZCLOUD-AUTHZ`` jumps the host has now (from
    ``parse_save``): none inserts one at the top of INPUT, more than one deletes the extras.
    Grants of the other family are left out (they belong in the other family's chain).
    Purely computational.
    """
    granted = {(ip, port) for ip, port in sources(host, grants) if family_of(ip) is family}
    return restore_input(chain_rules(host, granted, family=family), jumps=jumps)


def restore_input(rules: Iterable[str], *, jumps: int) -> str:
    """Declare, flush and refill our chain and fix INPUT's jump, in one transaction. Pure."""
    lines = ["*filter", f":{CHAIN} - [0:0]", f"-F {CHAIN}", *rules]
    if jumps == 0:
        lines.append(f"-I INPUT 1 -j {CHAIN}")
    lines.extend([f"-D INPUT -j {CHAIN}"] * max(0, jumps - 1))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# --- reading back (pure) ------------------------------------------------------------------------

@dataclass(frozen=True)
class ChainState:
    """What ``iptables-save -t filter`` says about our chain on one host, one family."""

    exists: bool = False
    jumps: int = 0                       # unconditional ``-A INPUT -j BIZCLOUD-AUTHZ`` rules
    rules: tuple[str, ...] = ()          # the chain's ``-A`` lines, in order
    accepts: frozenset[Source] = frozenset()
    drops: frozenset[int] = frozenset()
    foreign: tuple[str, ...] = ()        # lines in our chain that BizCloud does not write

    def converged(self, rules: tuple[str, ...]) -> bool:
        return self.exists and self.jumps == 1 and self.rules == rules


def parse_save(text: str) -> ChainState:
    """Our chain, as found in ``iptables-save -t filter`` (or ``ip6tables-save``) output.

    Only the ``*filter`` table is read; rules of other chains are ignored except the jump from
    INPUT. Purely computational.
    """
    exists, jumps, in_filter = False, 0, False
    rules: list[str] = []
    accepts: set[Source] = set()
    drops: set[int] = set()
    foreign: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            in_filter = line == "*filter"
            continue
        if not in_filter or not line or line.startswith("#"):
            continue
        if line.split(" ", 1)[0] == f":{CHAIN}":
            exists = True
        elif line == JUMP:
            jumps += 1
        elif line == LOOPBACK:
            rules.append(line)
        elif line.startswith(f"-A {CHAIN} "):
            rules.append(line)
            parsed = _parse_rule(line)
            if isinstance(parsed, int):
                drops.add(parsed)
            elif parsed is not None:
                accepts.add(parsed)
            else:
                foreign.append(line)
    return ChainState(exists=exists, jumps=jumps, rules=tuple(rules), accepts=frozenset(accepts),
                      drops=frozenset(drops), foreign=tuple(foreign))


def _parse_rule(line: str) -> Source | int | None:
    """An ACCEPT's (ip, port), a DROP's port, or None for a rule of a shape we never write."""
    try:
        tokens = shlex.split(line)[2:]
    except ValueError:
        return None
    if len(tokens) % 2:
        return None
    options = dict(zip(tokens[::2], tokens[1::2], strict=True))
    if len(options) * 2 != len(tokens) or options.get("-p") != "tcp" or options.get("-m") != "tcp":
        return None
    try:
        port = identifiers.port(int(options["--dport"]))
    except (KeyError, ValueError):
        return None
    verdict, source = options.get("-j"), options.get("-s")
    if verdict == "DROP" and set(options) == {"-p", "-m", "--dport", "-j"}:
        return port
    if verdict != "ACCEPT" or source is None or set(options) != {"-s", "-p", "-m", "--dport", "-j"}:
        return None
    try:
        network = ipaddress.ip_network(source, strict=True)
    except ValueError:
        return None
    if network.num_addresses != 1:
        return None
    return (str(network.network_address), port)


# --- the executor ---------------------------------------------------------------------------------

class IptablesExecutor:
    """Converges each firewalled host's ``BIZCLOUD-AUTHZ`` chains (IPv4 and IPv6) to a plan.

    ``plan.scope`` names the ports (as strings) this plan decides; empty means all of the host's
    ports. ACCEPTs on protected ports outside the scope are kept as they are; rules for ports the
    host no longer protects, and rules of a shape BizCloud never writes, are removed with the rest
    of the chain's old content.
    """

    kind = Kind.TCP

    def __init__(self, inventory: Callable[[], Inventory],
                 backends: Mapping[str, FirewallBackend] | None = None) -> None:
        self._inventory = inventory
        self._backends = dict(backends) if backends is not None else default_backends()
        self._locks: dict[str, asyncio.Lock] = {}

    async def converge(self, plan: TargetPlan, *, everything: bool = False) -> Converged:
        """Always reads the host's chain back whole (one ``iptables-save``): ``everything`` changes
        nothing here."""
        name = plan.target
        host = self._host(name)
        if plan.kind is not Kind.TCP:
            raise FirewallPlanError(f"{name}: a {plan.kind} plan was sent to the iptables executor",
                                    hint="route plans by executor kind")
        for grant in plan.desired:
            if grant.target != name:
                raise FirewallPlanError(f"{name}: the plan holds a grant for {grant.target!r}",
                                        hint="a plan's grants all name its target")
        wanted = sources(host, plan.desired, name=name)
        scope = _scope_ports(host, plan.scope, name=name)
        outside = sorted({port for _, port in wanted} - scope)
        if outside:
            raise FirewallPlanError(f"{name}: ports {outside} are granted but outside the plan's scope",
                                    hint="include every granted port in the plan's scope")
        backend = self._backend(host, name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            # Both families at once (two independent tables); each runs to its end even when the
            # other fails, and the first failure is raised after both are done.
            outcomes = await asyncio.gather(
                *(self._converge_family(host, name, backend, family=family, wanted=wanted, scope=scope)
                  for family in Family), return_exceptions=True)
        before: set[Source] = set()
        after: set[Source] = set()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            before |= outcome[0].accepts
            after |= outcome[1].accepts
        result = Converged(added=_grants(name, after - before), removed=_grants(name, before - after))
        if result.added or result.removed:
            log.info("iptables converged host=%s added=%d removed=%d", name, len(result.added),
                     len(result.removed))
        return result

    async def _converge_family(self, host: FirewalledHost, name: str, backend: FirewallBackend, *,
                               family: Family, wanted: frozenset[Source],
                               scope: frozenset[int]) -> tuple[ChainState, ChainState]:
        old = parse_save(await backend.run(host, [family.save, "-t", "filter"]))
        kept = {(ip, port) for ip, port in old.accepts
                if port in host.ports and port not in scope and family_of(ip) is family}
        mine = {(ip, port) for ip, port in wanted if family_of(ip) is family}
        rules = chain_rules(host, mine | kept, family=family)
        if old.converged(rules):
            return old, old
        if old.foreign:
            log.warning("iptables host=%s family=%s replacing %d rules BizCloud did not write: %s",
                        name, family, len(old.foreign), "; ".join(old.foreign))
        await backend.run(host, [family.restore, "-w", str(RESTORE_WAIT_SECONDS), "--noflush"],
                          stdin=restore_input(rules, jumps=old.jumps))
        new = parse_save(await backend.run(host, [family.save, "-t", "filter"]))
        if not new.converged(rules):
            raise ExecutorUnavailableError(
                f"{name}: the {family} chain {CHAIN} read back after iptables-restore differs from "
                f"what was written ({len(new.rules)} rules, {new.jumps} jumps from INPUT; "
                f"expected {len(rules)} rules and 1 jump)",
                hint="another tool may be rewriting the chain at the same time; the next converge retries")
        return old, new

    def _host(self, name: str) -> FirewalledHost:
        hosts = self._inventory().hosts
        host = hosts.get(name)
        if host is None:
            raise FirewallPlanError(f"{name}: not a firewalled host of the inventory",
                                    hint=f"the inventory's hosts are: {', '.join(sorted(hosts)) or 'none'}")
        return host

    def _backend(self, host: FirewalledHost, name: str) -> FirewallBackend:
        backend = self._backends.get(host.backend)
        if backend is None:
            raise FirewallPlanError(f"hosts.{name}.backend: no {host.backend!r} backend is configured",
                                    hint=f"configured backends: {', '.join(sorted(self._backends))}")
        return backend


def _scope_ports(host: FirewalledHost, scope: frozenset[str], *, name: str) -> frozenset[int]:
    if not scope:
        return frozenset(host.ports)
    ports = set()
    for entry in scope:
        try:
            ports.add(identifiers.port(int(entry), "scope"))
        except ValueError:
            raise FirewallPlanError(
                f"{name}: scope entry {entry!r} is not a port",
                hint="a tcp plan's scope lists the ports it decides, e.g. {'6379'}") from None
    return frozenset(ports)


def _grants(target: str, pairs: Iterable[Source]) -> tuple[Grant, ...]:
    grants = (Grant(Kind.TCP, ip, target, TcpAccess(port)) for ip, port in pairs)
    return tuple(sorted(grants, key=Grant.sort_key))
