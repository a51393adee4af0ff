#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of slotpilot from Debian bookworm packages.
# Idempotent: when everything is present it only runs dpkg-query and exits (well under a second).
# Works as root on a fresh machine; as another user it uses sudo when available.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries (the design card)
  libuv1-dev libhiredis-dev libabsl-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev
  # test and demo tooling
  redis-server redis-tools python3 python3-redis prometheus yamllint curl procps
  # the operator console's browser test (tests/integration/test_console.py)
  chromium chromium-driver python3-selenium
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=()
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
