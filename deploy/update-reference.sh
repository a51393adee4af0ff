#!/usr/bin/env bash
# Rewrites the configuration reference in deploy/README.md (between the BEGIN/END CONFIG
# REFERENCE markers) from the binary's own option table:
#   deploy/update-reference.sh [BINARY]      (default: build/release/proxy/slotpilot)
# tests/integration/test_deploy.py fails when the committed text differs from the binary's.
set -euo pipefail
REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
BIN=${1:-$REPO/build/release/proxy/slotpilot}
README=$REPO/deploy/README.md
reference=$("$BIN" --print-config-reference)
REFERENCE=$reference /usr/bin/python3 - "$README" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
begin = re.search(r"^<!-- BEGIN CONFIG REFERENCE.*-->\n", text, re.M)
end = re.search(r"^<!-- END CONFIG REFERENCE -->$", text, re.M)
if not begin or not end or end.start() < begin.end():
    sys.exit(f"{path}: BEGIN/END CONFIG REFERENCE markers not found")
body = os.environ["REFERENCE"].rstrip("\n") + "\n"
open(path, "w", encoding="utf-8").write(text[:begin.end()] + body + text[end.start():])
PY
echo "update-reference: $README updated from $BIN" >&2
