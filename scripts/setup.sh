#!/usr/bin/env bash
# Installs what BizCloud needs on a fresh Debian bookworm machine, and nothing twice:
# Debian packages for the real node and local images, then a virtualenv with the Python package.
# Go (1.24 or newer) must already be on PATH: Debian bookworm's golang is too old to build
# Kubernetes 1.34, so it is not installed from here.
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd, runc, CNI plugins: the real node. docker.io: builds local images. iptables: the CNI
# bridge's masquerading. busybox-static: the base image. gcc: the static pause binary.
# iproute2: node address and bridge clean-up. util-linux: setpriv/umount. ca-certificates: TLS.
# nginx + the Lua module + lua-resty-core + lua-cjson: the gateway. wrk: its benchmark.
# zookeeper: the SOA registry (it brings a Java runtime). debootstrap: the Python base image of
# the sample apps. chromium + nodejs/npm: the console's browser tests and its front-end packages
# (xterm.js). maven + openjdk-17-jdk-headless: the Apache Dubbo consumer of the SOA interop test.
# mariadb-server + mariadb-client: the MySQL master and replica whose grants follow the pods.
# graphviz: `dot -Tsvg` draws the console's dependency graph.
APT_PACKAGES=(containerd runc containernetworking-plugins docker.io iptables iproute2 busybox-static
              gcc libc6-dev util-linux ca-certificates
              nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache lua-cjson wrk
              zookeeper debootstrap chromium nodejs maven openjdk-17-jdk-headless
              mariadb-server mariadb-client graphviz)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  for dir in /usr/local/go/bin /usr/lib/go/bin; do
    [ -x "$dir/go" ] && export PATH="$dir:$PATH" && break
  done
fi
command -v go >/dev/null 2>&1 || {
  echo "setup: Go is not installed — install Go 1.24 or newer (https://go.dev/doc/install) and re-run" >&2
  exit 1
}

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.bizcloud-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the bizcloud package and its tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# The console's browser-side packages, from the npm registry, pinned by the lockfile.
frontend=bizcloud/web/frontend
if ! command -v npm >/dev/null 2>&1; then  # Debian's nodejs comes without npm; NodeSource's has it
  DEBIAN_FRONTEND=noninteractive $([ "$(id -u)" -eq 0 ] || echo sudo) apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if [ ! -d "$frontend/node_modules" ] || [ "$frontend/package-lock.json" -nt "$frontend/node_modules" ]; then
  echo "setup: installing the console's front-end packages (npm ci)"
  (cd "$frontend" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$frontend/node_modules"
fi
