"""Pinned versions of every binary the local cluster runs, and how each is built from Go modules.

Changing a version here is the whole upgrade: the build cache is keyed by it, so the next
`bizcloud cluster build` compiles the new one and leaves the old one in place.

Why these pins: kubelet 1.35+ refuses cgroup v1 by default and our machines run cgroup v1, so
Kubernetes stays on 1.34.x; etcd 3.6 is the line 1.34 is tested with; kwok 0.8.0 and cri-tools
1.34.0 declare a `go` line that Go 1.26 accepts, so no toolchain download is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
CRI_TOOLS_VERSION = "v1.34.0"
HELM_VERSION = "v3.22.0"
MIN_GO = (1, 24)


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    """The -X flags Kubernetes' own hack/lib/version.sh sets, so `--version` prints the truth."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


@dataclass(frozen=True)
class GoComponent:
    """One Go module built in its own throwaway module, producing one or more binaries."""

    name: str
    module: str
    version: str
    binaries: dict[str, str]  # binary name -> package path inside the module graph
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    # directories; a consumer must replace each with the published v0.<minor>.<patch>.
    replace_staging: bool = False
    # Files of the module's source concatenated into one file beside the binaries:
    # output name -> paths relative to the module root (kwok's stage definitions).
    assets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    def staging_version(self) -> str:
        """k8s.io/kubernetes v1.34.4 -> its staging modules' tag v0.34.4."""
        return "v0" + self.version[self.version.index(".") :]


KUBERNETES = GoComponent(
    name="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    binaries={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        "kubelet": "k8s.io/kubernetes/cmd/kubelet",
        "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    },
    ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
    tags=("selinux", "notest"),
    replace_staging=True,
)

ETCD = GoComponent(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    binaries={"etcd": "go.etcd.io/etcd/server/v3"},
)

KWOK = GoComponent(
    name="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    # kwok only simulates what Stage objects describe; these are upstream's "fast" node and pod
    # lifecycles plus lease heartbeats, exactly as `kwokctl` uses them.
    assets={"stages.yaml": (
        "kustomize/stage/node/fast/node-initialize.yaml",
        "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "kustomize/stage/pod/fast/pod-ready.yaml",
        "kustomize/stage/pod/fast/pod-complete.yaml",
        "kustomize/stage/pod/fast/pod-delete.yaml",
    )},
)

CRI_TOOLS = GoComponent(
    name="cri-tools",
    module="sigs.k8s.io/cri-tools",
    version=CRI_TOOLS_VERSION,
    binaries={"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
    ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRI_TOOLS_VERSION}",),
)

# Not a cluster binary: the Helm chart export's tests and `bench.release_render` run it, and
# `bizcloud cluster build` builds it (about 3 minutes cold on 2 cores); `cluster up` does not.
HELM = GoComponent(
    name="helm",
    module="helm.sh/helm/v3",
    version=HELM_VERSION,
    binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
    ldflags=(f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"),
)

COMPONENTS: tuple[GoComponent, ...] = (ETCD, KWOK, CRI_TOOLS, KUBERNETES)
TOOLS: tuple[GoComponent, ...] = (HELM,)


def component_for(binary: str) -> GoComponent:
    """The component that builds ``binary``."""
    for component in COMPONENTS:
        if binary in component.binaries:
            return component
    raise KeyError(binary)
