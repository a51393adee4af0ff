#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of slotpilot from Debian bookworm packages,
# then (test-only, in a full checkout) the client-conformance suite's pinned npm packages.
# Idempotent: when everything is present it only runs dpkg-query and compares two file times
# (well under a second). Works as root on a fresh machine; as another user it uses sudo when
# available.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries (the design card)
  libuv1-dev libhiredis-dev libabsl-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev libssl-dev
  # test and demo tooling
  redis-server redis-tools python3 python3-redis prometheus yamllint curl procps
  # the operator console's browser test (tests/integration/test_console.py)
  chromium chromium-driver python3-selenium
)

install_debian_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "install-deps: installing ${missing[*]}" >&2
  local SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to apt-get install" >&2; exit 1; }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh image has no package lists; refresh them once, and again if an install fails on stale lists.
  if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  # The Debian package starts a redis-server on :6379 and prometheus on :9090 as services; tests
  # start their own processes and the demo wants :6379 for the proxy, so stop the packaged ones.
  for svc in redis-server prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif command -v service >/dev/null; then
      "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
}

# Test-only: the client-conformance suite (tests/clients) runs real Node.js client libraries,
# pinned by its package-lock.json. `npm ci` runs when node_modules is missing or older than the
# lock file (npm ci writes node_modules/.package-lock.json last). The product itself keeps
# Debian-only dependencies; a tree without tests/clients (the Docker build stage) skips this.
install_client_test_packages() {
  local dir="$REPO_ROOT/tests/clients"
  [ -f "$dir/package-lock.json" ] || return 0
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-deps: tests/clients needs Node.js (18.19 or newer) and npm on PATH; install them" \
         "(e.g. apt-get install nodejs npm) and run deploy/install-deps.sh again" >&2
    exit 1
  fi
  [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] && return 0
  echo "install-deps: npm ci in tests/clients" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

install_debian_packages
install_client_test_packages
