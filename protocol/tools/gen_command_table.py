#!/usr/bin/python3
"""Generates protocol/command_table_data.inc from a real redis-server's COMMAND INFO.

Starts its own redis-server on a free loopback port (temporary directory, no persistence),
reads COMMAND INFO (every command with its subcommands), stops the server by PID and writes
the table as C++ aggregate initialisers for the structs in protocol/command_table.h. The output
is deterministic: commands and subcommands sorted by name, key specs in server order.

Usage:
  /usr/bin/python3 protocol/tools/gen_command_table.py            # rewrite the .inc
  /usr/bin/python3 protocol/tools/gen_command_table.py --check    # exit 1 if it would change

Needs the `redis` Python package (Debian: python3-redis) and a redis-server binary.
"""

import argparse
import difflib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "protocol", "command_table_data.inc")
SCRIPT_PATH = "protocol/tools/gen_command_table.py"

# Port range for the private server: loopback, below the kernel's ephemeral range and below
# 22000 so that port + 10000 would still be a valid cluster bus port if ever needed.
PORT_LOW, PORT_HIGH = 16000, 22000
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

COMMAND_FLAGS = {
    "write": "kCmdWrite",
    "readonly": "kCmdReadonly",
    "denyoom": "kCmdDenyOom",
    "module": "kCmdModule",
    "admin": "kCmdAdmin",
    "pubsub": "kCmdPubsub",
    "noscript": "kCmdNoscript",
    "blocking": "kCmdBlocking",
    "loading": "kCmdLoading",
    "stale": "kCmdStale",
    "skip_monitor": "kCmdSkipMonitor",
    "skip_slowlog": "kCmdSkipSlowlog",
    "asking": "kCmdAsking",
    "fast": "kCmdFast",
    "no_auth": "kCmdNoAuth",
    "may_replicate": "kCmdMayReplicate",
    "no_mandatory_keys": "kCmdNoMandatoryKeys",
    "no_multi": "kCmdNoMulti",
    "movablekeys": "kCmdMovableKeys",
    "allow_busy": "kCmdAllowBusy",
    "no_async_loading": "kCmdNoAsyncLoading",
}

KEY_SPEC_FLAGS = {
    "RO": "kKeyRO",
    "RW": "kKeyRW",
    "OW": "kKeyOW",
    "RM": "kKeyRM",
    "access": "kKeyAccess",
    "update": "kKeyUpdate",
    "insert": "kKeyInsert",
    "delete": "kKeyDelete",
    "not_key": "kKeyNotKey",
    "incomplete": "kKeyIncomplete",
    "variable_flags": "kKeyVariableFlags",
}

REQUEST_POLICIES = {
    "all_nodes": "RequestPolicy::kAllNodes",
    "all_shards": "RequestPolicy::kAllShards",
    "multi_shard": "RequestPolicy::kMultiShard",
    "special": "RequestPolicy::kSpecial",
}

RESPONSE_POLICIES = {
    "one_succeeded": "ResponsePolicy::kOneSucceeded",
    "all_succeeded": "ResponsePolicy::kAllSucceeded",
    "agg_logical_and": "ResponsePolicy::kAggLogicalAnd",
    "agg_logical_or": "ResponsePolicy::kAggLogicalOr",
    "agg_min": "ResponsePolicy::kAggMin",
    "agg_max": "ResponsePolicy::kAggMax",
    "agg_sum": "ResponsePolicy::kAggSum",
    "special": "ResponsePolicy::kSpecial",
}

# Commands whose keys Redis 7.0 finds with a getkeys procedure (the "get_keys_function" of
# src/commands/*.json) instead of, or as a fallback for, their key specs. COMMAND INFO does not
# expose this, so it is declared here and cross-checked below: every command with the
# movablekeys flag, or with an incomplete, unknown or variable-flags key spec, must be listed.
GETKEYS_PROCS = {
    "sort": "GetKeysProc::kSort",
    "sort_ro": "GetKeysProc::kSortRo",
    "migrate": "GetKeysProc::kMigrate",
    "eval": "GetKeysProc::kNumkeysAt2",
    "evalsha": "GetKeysProc::kNumkeysAt2",
    "eval_ro": "GetKeysProc::kNumkeysAt2",
    "evalsha_ro": "GetKeysProc::kNumkeysAt2",
    "fcall": "GetKeysProc::kNumkeysAt2",
    "fcall_ro": "GetKeysProc::kNumkeysAt2",
    "zunionstore": "GetKeysProc::kDestThenNumkeys",
    "zinterstore": "GetKeysProc::kDestThenNumkeys",
    "zdiffstore": "GetKeysProc::kDestThenNumkeys",
    "zunion": "GetKeysProc::kNumkeysAt1",
    "zinter": "GetKeysProc::kNumkeysAt1",
    "zdiff": "GetKeysProc::kNumkeysAt1",
    "zintercard": "GetKeysProc::kNumkeysAt1",
    "sintercard": "GetKeysProc::kNumkeysAt1",
    "lmpop": "GetKeysProc::kNumkeysAt1",
    "zmpop": "GetKeysProc::kNumkeysAt1",
    "blmpop": "GetKeysProc::kNumkeysAt2",
    "bzmpop": "GetKeysProc::kNumkeysAt2",
    "georadius": "GetKeysProc::kGeoradius",
    "georadiusbymember": "GetKeysProc::kGeoradius",
    "xread": "GetKeysProc::kXread",
    "xreadgroup": "GetKeysProc::kXread",
    "set": "GetKeysProc::kFirstArg",
    "bitfield": "GetKeysProc::kFirstArg",
}


def fail(message):
    sys.stderr.write("gen_command_table: %s\n" % message)
    sys.exit(2)


def pick_free_port():
    candidates = list(range(PORT_LOW, PORT_HIGH))
    random.shuffle(candidates)
    for port in candidates[:200]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    fail("no free loopback port in [%d, %d)" % (PORT_LOW, PORT_HIGH))


class PrivateRedis:
    """A redis-server child process on a free loopback port, in its own temporary directory."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.TemporaryDirectory(prefix="gen_command_table.")
        self.proc = None
        self.port = None

    def __enter__(self):
        for _ in range(5):
            self.port = pick_free_port()
            try:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--dir", self.dir.name, "--logfile", os.path.join(self.dir.name, "redis.log"),
                     "--save", "", "--appendonly", "no", "--daemonize", "no"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except OSError as e:
                self.dir.cleanup()
                fail("cannot run %s: %s" % (self.binary, e))
            if self._wait_ready():
                return self
            self._stop()  # probably lost a race for the port: try another one
        fail("redis-server did not start (see its log in %s)" % self.dir.name)

    def __exit__(self, *exc):
        self._stop()
        self.dir.cleanup()

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping():
                    return True
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        return False

    def _stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def raw_command(self, *args):
        """Sends one command and returns the reply unparsed by redis-py's command callbacks."""
        conn = redis.Connection(host="127.0.0.1", port=self.port, decode_responses=True)
        try:
            conn.send_command(*args)
            return conn.read_response()
        finally:
            conn.disconnect()


def read_server(binary):
    with PrivateRedis(binary) as server:
        info = server.raw_command("INFO", "server")
        version = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                       if line.startswith("redis_version:"))
        commands = server.raw_command("COMMAND", "INFO")
    return version, commands


def pairs_to_dict(flat):
    return dict(zip(flat[0::2], flat[1::2]))


# ---------------------------------------------------------------------------------------------
# Parsing COMMAND INFO (Redis 7 reply: name, arity, flags, first, last, step, acl categories,
# tips, key specs, subcommands).


def parse_key_spec(raw, cmd_name):
    spec = pairs_to_dict(raw)
    flags = spec.get("flags", [])
    for f in flags:
        if f not in KEY_SPEC_FLAGS:
            fail("%s: unknown key-spec flag %r" % (cmd_name, f))
    begin = pairs_to_dict(spec["begin_search"])
    find = pairs_to_dict(spec["find_keys"])
    begin_spec = pairs_to_dict(begin.get("spec") or [])
    find_spec = pairs_to_dict(find.get("spec") or [])
    if begin["type"] not in ("index", "keyword", "unknown"):
        fail("%s: unknown begin_search type %r" % (cmd_name, begin["type"]))
    if find["type"] not in ("range", "keynum", "unknown"):
        fail("%s: unknown find_keys type %r" % (cmd_name, find["type"]))
    return {
        "flags": [f for f in KEY_SPEC_FLAGS if f in flags],  # canonical order
        "begin_type": begin["type"],
        "index": int(begin_spec.get("index", 0)),
        "keyword": begin_spec.get("keyword", ""),
        "start_from": int(begin_spec.get("startfrom", 0)),
        "find_type": find["type"],
        "last_key": int(find_spec.get("lastkey", 0)),
        "key_step": int(find_spec.get("keystep", 1)),
        "limit": int(find_spec.get("limit", 0)),
        "keynum_index": int(find_spec.get("keynumidx", 0)),
        "first_key": int(find_spec.get("firstkey", 0)),
    }


def parse_tips(tips, cmd_name):
    request, response = None, None
    for tip in tips:
        kind, _, value = tip.partition(":")
        if kind == "request_policy":
            if value not in REQUEST_POLICIES:
                fail("%s: unknown request policy %r" % (cmd_name, value))
            request = REQUEST_POLICIES[value]
        elif kind == "response_policy":
            if value not in RESPONSE_POLICIES:
                fail("%s: unknown response policy %r" % (cmd_name, value))
            response = RESPONSE_POLICIES[value]
    return request, response


def parse_command(raw, parent=None):
    full_name = raw[0].lower()
    name = full_name.split("|", 1)[1] if parent else full_name
    for f in raw[2]:
        if f not in COMMAND_FLAGS:
            fail("%s: unknown command flag %r" % (full_name, f))
    request, response = parse_tips(raw[7], full_name)
    cmd = {
        "name": name,
        "full_name": full_name,
        "arity": int(raw[1]),
        "flags": [f for f in COMMAND_FLAGS if f in raw[2]],  # canonical order
        "specs": [parse_key_spec(s, full_name) for s in raw[8]],
        "request_policy": request,
        "response_policy": response,
        "getkeys": None if parent else GETKEYS_PROCS.get(full_name),
    }
    cmd["subcommands"] = sorted((parse_command(s, cmd) for s in raw[9]),
                                key=lambda c: c["name"])
    return cmd


def check_getkeys_procs(commands):
    """Every command whose specs cannot be trusted alone must have a declared procedure."""
    by_name = {c["full_name"]: c for c in commands}
    for name in GETKEYS_PROCS:
        if name not in by_name:
            fail("GETKEYS_PROCS names %r, which this server does not have" % name)
    for cmd in commands + [s for c in commands for s in c["subcommands"]]:
        needs_proc = "movablekeys" in cmd["flags"] or any(
            s["begin_type"] == "unknown" or s["find_type"] == "unknown" or
            "incomplete" in s["flags"] or "variable_flags" in s["flags"] for s in cmd["specs"])
        if needs_proc and cmd["getkeys"] is None:
            fail("%s has movable or incomplete keys but no entry in GETKEYS_PROCS: read its "
                 "getkeys function in Redis's src/db.c and add it" % cmd["full_name"])


# ---------------------------------------------------------------------------------------------
# Emitting C++.


def ident(full_name):
    return "".join(ch if ch.isalnum() else "_" for ch in full_name)


def cxx_string(s):
    if any(ch in s for ch in '"\\') or not s.isprintable():
        fail("unexpected character in %r" % s)
    return '"%s"' % s


LINE_LIMIT = 100  # the project's .clang-format ColumnLimit


def wrap(head, items, sep, indent, tail):
    """head + items joined by sep + tail, broken before LINE_LIMIT; continuation lines start
    with `indent` spaces."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (sep.rstrip() if i + 1 < len(items) else tail)
        if line.strip() and len(line) + len(piece) > LINE_LIMIT and line != head:
            lines.append(line.rstrip())
            line = " " * indent
        line += piece + (" " if i + 1 < len(items) else "")
    lines.append(line)
    return "\n".join(lines)


BEGIN_TYPES = {"index": "kIndex", "keyword": "kKeyword", "unknown": "kUnknown"}
FIND_TYPES = {"range": "kRange", "keynum": "kKeynum", "unknown": "kUnknown"}


def emit_key_spec(spec):
    # Every field is spelled out: GCC's -Wmissing-field-initializers also covers designated
    # initialisers.
    begin = [".type = BeginSearch::Type::%s" % BEGIN_TYPES[spec["begin_type"]],
             ".index = %d" % spec["index"], ".keyword = %s" % cxx_string(spec["keyword"]),
             ".start_from = %d" % spec["start_from"]]
    find = [".type = FindKeys::Type::%s" % FIND_TYPES[spec["find_type"]],
            ".last_key = %d" % spec["last_key"], ".key_step = %d" % spec["key_step"],
            ".limit = %d" % spec["limit"], ".keynum_index = %d" % spec["keynum_index"],
            ".first_key = %d" % spec["first_key"]]
    flags = [KEY_SPEC_FLAGS[f] for f in spec["flags"]] or ["0"]
    return "%s\n%s\n%s\n" % (
        wrap("    {.begin = {", begin, ",", 15, "},"),
        wrap("     .find = {", find, ",", 14, "},"),
        wrap("     .flags = ", flags, " |", 14, "},"))


def emit_specs_array(cmd, out):
    if not cmd["specs"]:
        return
    out.append("constexpr KeySpec kSpecs_%s[] = {\n" % ident(cmd["full_name"]))
    out.extend(emit_key_spec(s) for s in cmd["specs"])
    out.append("};\n")


def emit_command(cmd):
    ident_name = ident(cmd["full_name"])
    flags = [COMMAND_FLAGS[f] for f in cmd["flags"]] or ["0"]
    fields = [
        ".name = %s," % cxx_string(cmd["name"]),
        ".full_name = %s," % cxx_string(cmd["full_name"]),
        ".arity = %d," % cmd["arity"],
        wrap("     .flags = ", flags, " |", 14, ",").lstrip(),
        ".key_specs = %s," % ("kSpecs_" + ident_name if cmd["specs"] else "nullptr"),
        ".key_spec_count = %d," % len(cmd["specs"]),
        ".subcommands = %s," % ("kSubcommands_" + ident_name if cmd["subcommands"] else "nullptr"),
        ".subcommand_count = %d," % len(cmd["subcommands"]),
        ".getkeys = %s," % (cmd["getkeys"] or "GetKeysProc::kNone"),
        ".request_policy = %s," % (cmd["request_policy"] or "RequestPolicy::kDefault"),
        ".response_policy = %s}," % (cmd["response_policy"] or "ResponsePolicy::kDefault"),
    ]
    return "    {" + "\n     ".join(fields) + "\n"


def render(version, commands):
    sub_count = sum(len(c["subcommands"]) for c in commands)
    out = [
        "// generated by %s from redis-server %s — do not edit\n" % (SCRIPT_PATH, version),
        "// %d commands, %d subcommands. Regenerate: /usr/bin/python3 %s\n"
        % (len(commands), sub_count, SCRIPT_PATH),
        "// Included once, by protocol/command_table.cc, inside an anonymous namespace in\n"
        "// slotpilot::protocol.\n\n",
        "constexpr std::string_view kCommandTableRedisVersion = %s;\n\n" % cxx_string(version),
    ]
    seen = set()
    for cmd in commands:
        for sub in cmd["subcommands"]:
            emit_specs_array(sub, out)
        if cmd["subcommands"]:
            out.append("constexpr CommandInfo kSubcommands_%s[] = {\n" % ident(cmd["full_name"]))
            out.extend(emit_command(s) for s in cmd["subcommands"])
            out.append("};\n")
        emit_specs_array(cmd, out)
        for c in [cmd] + cmd["subcommands"]:
            if ident(c["full_name"]) in seen:
                fail("identifier collision for %r" % c["full_name"])
            seen.add(ident(c["full_name"]))
    out.append("\nconstexpr CommandInfo kCommands[] = {\n")
    out.extend(emit_command(c) for c in commands)
    out.append("};\n")
    return "".join(out)


def generate(binary):
    version, raw_commands = read_server(binary)
    commands = sorted((parse_command(raw) for raw in raw_commands), key=lambda c: c["name"])
    check_getkeys_procs(commands)
    return render(version, commands)


def diff_files(checked_in, regenerated):
    """Returns 0 when both files are identical, else prints a unified diff and returns 1."""
    try:
        with open(checked_in, encoding="utf-8") as f:
            current = f.readlines()
    except FileNotFoundError:
        current = []
    with open(regenerated, encoding="utf-8") as f:
        fresh = f.readlines()
    rel = os.path.relpath(checked_in, REPO_ROOT)
    if current == fresh:
        print("gen_command_table: %s is up to date" % rel)
        return 0
    sys.stdout.writelines(difflib.unified_diff(current, fresh, fromfile=rel,
                                               tofile="regenerated"))
    print("gen_command_table: %s is stale: rerun without --check" % rel)
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate to a temporary file and diff against --output; "
                             "exit 1 on drift")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary")
    args = parser.parse_args()

    text = generate(args.redis_server)
    if not args.check:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        return 0

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".inc", delete=False) as tmp:
        tmp.write(text)
    try:
        return diff_files(args.output, tmp.name)
    finally:
        os.unlink(tmp.name)


if __name__ == "__main__":
    sys.exit(main())
