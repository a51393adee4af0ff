#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite:
#   1. dependencies (deploy/install-deps.sh, a no-op when present),
#   2. the debug build (ASan + UBSan) and every unit and integration test through CTest,
#   3. the libFuzzer targets (clang) for SLOTPILOT_FUZZ_SECONDS each (default 60).
# Exits non-zero when anything fails. Extra arguments go to the first ctest (e.g. -R Slot).
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
jobs=$(nproc)
fuzz_seconds=${SLOTPILOT_FUZZ_SECONDS:-60}

cmake --preset debug >/dev/null
cmake --build --preset debug -j "$jobs"
cmake --preset fuzz -DSLOTPILOT_FUZZ_SECONDS="$fuzz_seconds" >/dev/null
cmake --build --preset fuzz -j "$jobs"

status=0
# Integration tests start whole clusters; they hold the "cluster" resource lock and so run one at
# a time, while unit tests fill the other core.
ctest --preset debug -j "$jobs" "$@" || status=1
if [ $# -eq 0 ]; then
  ctest --preset fuzz -j "$jobs" || status=1
fi
exit $status
