// What the proxy does with each Redis command: forward it by key slot, send it to any master,
// answer it itself, or refuse it with a clear error. Built once from the protocol command table;
// immutable afterwards (safe from every worker).
#ifndef SLOTPILOT_PROXY_COMMAND_POLICY_H_
#define SLOTPILOT_PROXY_COMMAND_POLICY_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/command_table.h"
#include "proxy/fanout.h"
#include "proxy/stats.h"

namespace slotpilot::proxy {

enum class CommandRoute : uint8_t {
  kByKey,        // every key must hash to one slot (else CROSSSLOT); no key: any master
  kAnyMaster,    // keyless, and any master answers the same (TIME, COMMAND, PUBLISH, ...)
  kLocal,        // answered by the proxy (PING, HELLO, AUTH, SELECT, ...)
  kForbidden,    // must not pass a proxy (MONITOR, CLUSTER SETSLOT, SHUTDOWN, ...)
  kUnsupported,  // needs work not done yet (pinned connections)
  kSplitByKey,   // MGET, MSET, DEL, ...: one sub-request per slot, merged in key order
  kAllMasters,   // DBSIZE, KEYS, FLUSHALL, SCRIPT LOAD, ...: every master, merged
  kScan,         // SCAN: one master at a time, the cursor says which
  kBlocking,     // BLPOP, XREAD BLOCK, ...: the client's dedicated connection to the slot's node
};

enum class LocalCommand : uint8_t {
  kNone, kPing, kEcho, kQuit, kSelect, kHello, kAuth, kClientSetName, kClientGetName, kClientId,
  kInfo, kClusterKeySlot, kReset, kReadOnlyNoop, kClientList, kClientInfo,
  // Transactions (Transaction) and subscribed mode (PubSubRelay).
  kMulti, kExec, kDiscard, kWatch, kUnwatch, kSubscribe, kShardSubscribe, kShardUnsubscribe,
};

struct CommandPolicy {
  CommandRoute route = CommandRoute::kByKey;
  LocalCommand local = LocalCommand::kNone;
  CommandClass command_class = CommandClass::kOther;
  bool allowed_before_auth = false;
  MergeKind merge = MergeKind::kAllOk;  // kSplitByKey / kAllMasters
  bool key_value_pairs = false;         // kSplitByKey: each key is followed by its value (MSET)
  // kAllMasters: each master gets the command on a connection of its own, not the shared
  // pipelined one, which may be stuck behind the very script SCRIPT KILL is meant to stop.
  bool own_connections = false;
  bool allowed_when_subscribed = false; // RESP2 subscribed mode: (P|S)(UN)SUBSCRIBE, PING, QUIT, RESET
  bool runs_in_multi = false;           // executed, not queued, inside MULTI (EXEC, DISCARD, ...)
  std::string error;  // full error line for kForbidden / kUnsupported, without "-" and CRLF
};

// The policy of a resolved command (a top-level command or a subcommand). Never null.
const CommandPolicy& PolicyFor(const protocol::CommandInfo* command, bool allow_admin_commands);

// "CONFIG SET" for config|set, "GET" for get.
std::string DisplayName(const protocol::CommandInfo& command);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_COMMAND_POLICY_H_
