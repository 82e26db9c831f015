"""What a service config and the resource inventory may say, as pydantic models.

A service config (``kind: Service``) declares what a service is (type, ports, resources per
environment, files to mount) and what it depends on: MySQL databases, Redis instances, SOA
interfaces it consumes, and TCP endpoints behind a firewall. The inventory (``kind: Inventory``)
says where those resources live: each MySQL cluster's master and slaves with a reference to the
Kubernetes Secret holding its admin credentials (never the credentials themselves), each Redis,
and each firewalled host with the backend that manages its iptables.

Every name that can reach SQL, iptables or ZooKeeper is checked by ``bizcloud.identifiers``;
unknown keys are errors (``extra="forbid"``), so a typo is reported at its field instead of being
ignored. Cross-references (a dependency naming a cluster the inventory lacks) are checked by
``check_references``, which needs both documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bizcloud import identifiers

ServiceName = Annotated[str, AfterValidator(lambda v: identifiers.service_name(v, "name"))]
EnvName = Annotated[str, AfterValidator(lambda v: identifiers.service_name(v, "environment"))]
ResourceName = Annotated[str, AfterValidator(lambda v: identifiers.service_name(v, "resource name"))]
MysqlUser = Annotated[str, AfterValidator(lambda v: identifiers.mysql_user(v, "user"))]
MysqlDatabase = Annotated[str, AfterValidator(lambda v: identifiers.mysql_database(v, "database"))]
Host = Annotated[str, AfterValidator(lambda v: identifiers.host(v, "host"))]
IpAddress = Annotated[str, AfterValidator(lambda v: identifiers.ip_address(v, "address"))]
Port = Annotated[int, AfterValidator(lambda v: identifiers.port(v, "port"))]
Interface = Annotated[str, AfterValidator(lambda v: identifiers.interface(v, "interface"))]
Role = Literal["master", "slaves"]
PortName = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,13}[a-z0-9])?$")]  # a container port name


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import. The
    # monitor imports these models at start (its authorization worker plans with them) while its
    # backlog runs, and usually validates only the inventory then, or nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --- service config ----------------------------------------------------------------------------

EnvVarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
CpuQuantity = Annotated[str, AfterValidator(lambda v: identifiers.cpu_quantity(v, "cpu"))]
MemoryQuantity = Annotated[str, AfterValidator(lambda v: identifiers.memory_quantity(v, "memory"))]
ImageRef = Annotated[str, AfterValidator(lambda v: identifiers.image(v, "image"))]
KindName = Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]{0,62}$")]


class Resources(Strict):
    """One environment's parameters; the release templates read them."""

    replicas: int = Field(default=1, ge=0, le=1000)
    cpu: CpuQuantity = "100m"
    memory: MemoryQuantity = "128Mi"
    env: dict[EnvVarName, str] = Field(default_factory=dict)


class Probe(Strict):
    """How Kubernetes (and so the monitor) knows a pod is Ready: an HTTP GET, or a TCP connect."""

    port: PortName
    path: Annotated[str, Field(pattern=r"^/[\x21-\x7e]*$")] | None = None  # None: a TCP connect
    period_s: int = Field(default=2, ge=1, le=300)


class Provides(Strict):
    """What the service offers other services: the SOA interfaces BizCloud registers for its pods."""

    soa: tuple[Interface, ...] = ()


class Patch(Strict):
    """A change to the objects the template set renders, for what the templates cannot say.

    ``merge`` is an RFC 7386 JSON merge patch, ``json`` an RFC 6902 JSON patch; one of them.
    ``group`` narrows a workload patch to the normal or the gray Deployment.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    kind: KindName
    name: str | None = None
    group: Literal["normal", "gray"] | None = None
    merge: dict[str, Any] | None = None
    json_patch: tuple[dict[str, Any], ...] | None = Field(default=None, alias="json")

    @model_validator(mode="after")
    def _one(self) -> Patch:
        if (self.merge is None) == (self.json_patch is None):
            raise ValueError("give exactly one of merge (an RFC 7386 merge patch) "
                             "or json (RFC 6902 operations)")
        return self


class Customize(Strict):
    """The hook for a service's special configuration: extra manifests and patches to rendered ones."""

    manifests: tuple[dict[str, Any], ...] = ()
    patches: tuple[Patch, ...] = ()

    @field_validator("manifests")
    @classmethod
    def _manifests(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        for i, doc in enumerate(value):
            name = doc.get("metadata", {}).get("name") if isinstance(doc.get("metadata"), dict) else None
            if not (isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str) and name):
                raise ValueError(f"manifests[{i}]: a manifest needs apiVersion, kind and metadata.name")
        return value


class ConfigFile(Strict):
    """A file mounted into the service's containers (a ConfigMap made by the release templates)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,253}$")]
    mount: Annotated[str, Field(pattern=r"^/[^\x00]*$")]
    content: str = ""


class MysqlDependency(Strict):
    """A database the service uses: one account ``user``@pod-IP per pod on each server of ``roles``."""

    cluster: ResourceName
    database: MysqlDatabase
    user: MysqlUser
    privileges: frozenset[str]
    roles: frozenset[Role] = frozenset({"master"})

    @field_validator("privileges", mode="before")
    @classmethod
    def _privileges(cls, value: object) -> frozenset[str]:
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise ValueError("give privileges as a list, e.g. [SELECT, INSERT]")
        return identifiers.mysql_privileges(value)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: frozenset[str]) -> frozenset[str]:
        if not value:
            raise ValueError("name at least one role: master and/or slaves")
        return value


class RedisDependency(Strict):
    """A Redis the service uses: a firewall grant on the Redis host's port for each pod."""

    instance: ResourceName


class SoaDependency(Strict):
    """SOA interfaces the service consumes: each pod's IP goes on those interfaces' whitelists."""

    interfaces: tuple[Interface, ...] = Field(min_length=1)


class TcpDependency(Strict):
    """A TCP endpoint on a firewalled host of the inventory: an iptables ACCEPT per pod IP."""

    host: ResourceName
    port: Port


class Dependencies(Strict):
    mysql: tuple[MysqlDependency, ...] = ()
    redis: tuple[RedisDependency, ...] = ()
    soa: tuple[SoaDependency, ...] = ()
    tcp: tuple[TcpDependency, ...] = ()


class ServiceConfig(Strict):
    kind: Literal["Service"] = "Service"
    name: ServiceName
    type: Literal["stateless", "stateful"] = "stateless"
    ports: dict[PortName, Port] = Field(default_factory=dict)
    resources: dict[EnvName, Resources] = Field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()
    dependencies: Dependencies = Field(default_factory=Dependencies)  # a factory: see Strict
    # What the release templates run: the image (a deploy's --image wins, then the image running
    # now), its command and args, variables for every environment (resources.<env>.env adds and
    # overrides), the readiness probe, what it provides, and the hook for anything else.
    image: ImageRef | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[EnvVarName, str] = Field(default_factory=dict)
    probe: Probe | None = None
    provides: Provides = Field(default_factory=Provides)
    customize: Customize = Field(default_factory=Customize)

    @model_validator(mode="after")
    def _unique(self) -> ServiceConfig:
        users = [(dep.cluster, dep.user) for dep in self.dependencies.mysql]
        if len(set(users)) != len(users):
            raise ValueError("dependencies.mysql: one user is declared twice on one cluster; "
                             "merge the entries (one user, one database and its privileges)")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("files: a file name is used twice")
        if self.probe is not None and self.probe.port not in self.ports:
            raise ValueError(f"probe.port: {self.probe.port!r} is not one of ports "
                             f"({', '.join(self.ports) or 'none'}); name a declared port")
        return self


# --- inventory ---------------------------------------------------------------------------------

class SecretRef(Strict):
    """A Kubernetes Secret holding credentials: the inventory stores where, never what."""

    namespace: ResourceName
    name: ResourceName
    username_key: str = "username"
    password_key: str = "password"


class Server(Strict):
    host: Host
    port: Port = 3306


class MysqlCluster(Strict):
    master: Server
    slaves: tuple[Server, ...] = ()
    admin: SecretRef
    # The environments whose pods may be granted access; empty means every environment. A
    # production cluster lists only production, so a test pod is never granted a production account.
    environments: frozenset[EnvName] = frozenset()


class FirewalledHost(Strict):
    """A host whose ``ports`` only granted sources may reach; BizCloud owns its BIZCLOUD-AUTHZ chain."""

    address: Host
    ports: tuple[Port, ...] = Field(min_length=1)
    backend: Literal["local", "ssh", "salt"] = "local"
    netns: ResourceName | None = None     # local backend: the network namespace the host is
    ssh_user: str = "root"                 # ssh backend
    salt_target: str | None = None         # salt backend: the minion id (default: address)
    environments: frozenset[EnvName] = frozenset()


class RedisInstance(Strict):
    host: ResourceName   # a firewalled host of this inventory
    port: Port = 6379
    environments: frozenset[EnvName] = frozenset()


class Inventory(Strict):
    kind: Literal["Inventory"] = "Inventory"
    mysql: dict[ResourceName, MysqlCluster] = Field(default_factory=dict)
    redis: dict[ResourceName, RedisInstance] = Field(default_factory=dict)
    hosts: dict[ResourceName, FirewalledHost] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _redis_hosts(self) -> Inventory:
        for name, redis in self.redis.items():
            host = self.hosts.get(redis.host)
            if host is None:
                raise ValueError(f"redis.{name}.host: {redis.host!r} is not under hosts; add it there "
                                 "(with the ports its firewall protects)")
            if redis.port not in host.ports:
                raise ValueError(f"redis.{name}.port: {redis.port} is not one of hosts.{redis.host}.ports")
        return self


def check_references(config: ServiceConfig, inventory: Inventory) -> list[str]:
    """Every resource ``config`` names that ``inventory`` lacks, as field-named messages."""
    problems = []
    for i, mysql in enumerate(config.dependencies.mysql):
        cluster = inventory.mysql.get(mysql.cluster)
        if cluster is None:
            problems.append(f"dependencies.mysql[{i}].cluster: unknown MySQL cluster {mysql.cluster!r}; "
                            f"the inventory has: {', '.join(sorted(inventory.mysql)) or 'none'}")
        elif "slaves" in mysql.roles and not cluster.slaves:
            problems.append(f"dependencies.mysql[{i}].roles: cluster {mysql.cluster!r} has no slaves")
    for i, redis in enumerate(config.dependencies.redis):
        if redis.instance not in inventory.redis:
            problems.append(f"dependencies.redis[{i}].instance: unknown Redis {redis.instance!r}; "
                            f"the inventory has: {', '.join(sorted(inventory.redis)) or 'none'}")
    for i, tcp in enumerate(config.dependencies.tcp):
        host = inventory.hosts.get(tcp.host)
        if host is None:
            problems.append(f"dependencies.tcp[{i}].host: unknown host {tcp.host!r}; "
                            f"the inventory has: {', '.join(sorted(inventory.hosts)) or 'none'}")
        elif tcp.port not in host.ports:
            problems.append(f"dependencies.tcp[{i}].port: {tcp.port} is not protected on {tcp.host!r} "
                            f"(its ports: {', '.join(map(str, host.ports))})")
    return problems
