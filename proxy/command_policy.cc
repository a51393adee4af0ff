#include "proxy/command_policy.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "protocol/strings.h"

namespace slotpilot::proxy {
namespace {

using protocol::CommandInfo;

// Answered by the proxy itself.
const std::pair<std::string_view, LocalCommand> kLocal[] = {
    {"ping", LocalCommand::kPing},          {"echo", LocalCommand::kEcho},
    {"quit", LocalCommand::kQuit},          {"select", LocalCommand::kSelect},
    {"hello", LocalCommand::kHello},        {"auth", LocalCommand::kAuth},
    {"client|setname", LocalCommand::kClientSetName},
    {"client|getname", LocalCommand::kClientGetName},
    {"client|id", LocalCommand::kClientId}, {"info", LocalCommand::kInfo},
    {"client|list", LocalCommand::kClientList}, {"client|info", LocalCommand::kClientInfo},
    {"cluster|keyslot", LocalCommand::kClusterKeySlot},
    {"reset", LocalCommand::kReset},        {"readonly", LocalCommand::kReadOnlyNoop},
    {"readwrite", LocalCommand::kReadOnlyNoop},
    {"multi", LocalCommand::kMulti},        {"exec", LocalCommand::kExec},
    {"discard", LocalCommand::kDiscard},    {"watch", LocalCommand::kWatch},
    {"unwatch", LocalCommand::kUnwatch},    {"subscribe", LocalCommand::kSubscribe},
    {"psubscribe", LocalCommand::kSubscribe}, {"unsubscribe", LocalCommand::kSubscribe},
    {"punsubscribe", LocalCommand::kSubscribe}, {"ssubscribe", LocalCommand::kShardSubscribe},
    {"sunsubscribe", LocalCommand::kShardUnsubscribe},
};

// Keyless commands every master answers alike.
constexpr std::string_view kAnyMaster[] = {
    "time", "lastsave", "command", "command|count", "command|docs", "command|getkeys",
    "command|getkeysandflags", "command|info", "command|list", "publish", "lolwut",
    "pubsub|channels", "pubsub|numpat", "pubsub|numsub", "config|get",
};

// Never through a proxy: they would expose or reconfigure the cluster, or hijack the connection.
constexpr std::string_view kForbidden[] = {
    "monitor", "sync", "psync", "replconf", "debug", "shutdown", "replicaof", "slaveof",
    "failover", "asking", "restore-asking", "migrate", "module", "swapdb", "bgsave", "save",
    "bgrewriteaof", "pfdebug", "pfselftest", "cluster", "acl", "client|kill", "client|pause",
    "client|unpause", "client|reply", "client|tracking", "client|no-evict", "client|caching",
    "client|getredir", "client|trackinginfo", "client|unblock", "latency", "slowlog",
    "config|set", "config|rewrite", "config|resetstat", "function|restore", "memory|purge",
};

// Commands whose proxy support needs pinned connections (transactions, blocking, pub/sub), and
// keyless ones no merge makes sense for. A clear error, never a wrong answer.
constexpr std::string_view kUnsupported[] = {
    "client", "config", "pubsub", "script", "function",
};

// Multi-key commands split per slot and merged (non-atomic across slots, like a cluster client).
struct SplitSpec {
  std::string_view name;
  MergeKind merge;
  bool pairs;
};
constexpr SplitSpec kSplit[] = {
    {"mget", MergeKind::kArrayByKey, false}, {"mset", MergeKind::kAllOk, true},
    {"del", MergeKind::kSumIntegers, false}, {"unlink", MergeKind::kSumIntegers, false},
    {"exists", MergeKind::kSumIntegers, false}, {"touch", MergeKind::kSumIntegers, false},
};

// Keyspace-wide commands sent to every master.
struct AllMastersSpec {
  std::string_view name;
  MergeKind merge;
  bool admin = false;            // only with --allow-admin-commands
  bool own_connections = false;  // see CommandPolicy::own_connections
};
constexpr AllMastersSpec kAllMasters[] = {
    {"dbsize", MergeKind::kSumIntegers},      {"keys", MergeKind::kConcatArrays},
    {"randomkey", MergeKind::kRandomNonNil},  {"flushall", MergeKind::kAllOk},
    {"flushdb", MergeKind::kAllOk},           {"script|load", MergeKind::kSameReply},
    {"script|flush", MergeKind::kAllOk},      {"script|exists", MergeKind::kAndIntegers},
    {"function|load", MergeKind::kSameReply}, {"function|delete", MergeKind::kAllOk},
    {"function|flush", MergeKind::kAllOk},    {"config|set", MergeKind::kAllOk, true},
    {"config|resetstat", MergeKind::kAllOk, true},
    {"pubsub|shardchannels", MergeKind::kConcatArrays},
    // A runaway script blocks its master (every other client gets -BUSY) and the connection that
    // sent it; Redis lets anyone stop a script that has not written, so these are never refused.
    {"script|kill", MergeKind::kAnyOk, false, true},
    {"function|kill", MergeKind::kAnyOk, false, true},
};

CommandClass ClassOf(const CommandInfo& c) {
  if (c.has(protocol::kCmdWrite)) return CommandClass::kWrite;
  if (c.has(protocol::kCmdReadonly)) return CommandClass::kRead;
  return CommandClass::kOther;
}

CommandPolicy DefaultPolicy(const CommandInfo& c) {
  CommandPolicy p;
  p.command_class = ClassOf(c);
  if (c.has(protocol::kCmdBlocking) || c.full_name == "wait") {
    p.route = CommandRoute::kBlocking;
  } else if (c.has(protocol::kCmdPubsub)) {
    p.route = CommandRoute::kUnsupported;
  } else if (c.key_spec_count > 0) {
    p.route = CommandRoute::kByKey;
  } else if (c.has(protocol::kCmdAdmin)) {
    p.route = CommandRoute::kForbidden;
  } else {
    p.route = CommandRoute::kUnsupported;
  }
  return p;
}

class PolicyTable {
 public:
  explicit PolicyTable(bool allow_admin) {
    for (const CommandInfo& c : protocol::AllCommands()) {
      Add(c, allow_admin);
      for (const CommandInfo& sub : c.subs()) Add(sub, allow_admin);
    }
  }
  const CommandPolicy& Get(const CommandInfo* c) const {
    auto it = policies_.find(c);
    return it == policies_.end() ? fallback_ : it->second;
  }

 private:
  void Add(const CommandInfo& c, bool allow_admin) {
    CommandPolicy p = DefaultPolicy(c);
    std::string_view name = c.full_name;
    std::string_view parent = name.substr(0, name.find('|'));
    auto listed = [&](auto& list, std::string_view n) {
      for (std::string_view e : list) if (e == n) return true;
      return false;
    };
    if (listed(kUnsupported, parent) || listed(kUnsupported, name)) p.route = CommandRoute::kUnsupported;
    if (listed(kAnyMaster, name)) p.route = CommandRoute::kAnyMaster;
    if (listed(kForbidden, parent) || listed(kForbidden, name)) p.route = CommandRoute::kForbidden;
    for (const auto& [n, local] : kLocal) {
      if (n == name) {
        p.route = CommandRoute::kLocal;
        p.local = local;
        p.command_class = CommandClass::kLocal;
      }
    }
    for (const SplitSpec& split : kSplit) {
      if (split.name == name) {
        p.route = CommandRoute::kSplitByKey;
        p.merge = split.merge;
        p.key_value_pairs = split.pairs;
      }
    }
    for (const AllMastersSpec& all : kAllMasters) {
      if (all.name == name && (!all.admin || allow_admin)) {
        p.route = CommandRoute::kAllMasters;
        p.merge = all.merge;
        p.own_connections = all.own_connections;
      }
    }
    if (name == "scan") p.route = CommandRoute::kScan;
    if (name == "spublish") p.route = CommandRoute::kByKey;  // by the shard channel's slot
    p.allowed_before_auth = name == "auth" || name == "hello" || name == "quit" || name == "reset";
    for (std::string_view n : {"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
                               "sunsubscribe", "ping", "quit", "reset"}) {
      if (n == name) p.allowed_when_subscribed = true;
    }
    for (std::string_view n : {"exec", "discard", "multi", "watch", "quit", "reset"}) {
      if (n == name) p.runs_in_multi = true;
    }
    if (p.route == CommandRoute::kForbidden) {
      p.error = StrCat("ERR slotpilot: '", DisplayName(c), "' is not allowed through the proxy");
    } else if (p.route == CommandRoute::kUnsupported) {
      p.error = StrCat("ERR slotpilot: '", DisplayName(c), "' is not supported by the proxy yet");
    }
    policies_.emplace(&c, std::move(p));
  }

  absl::flat_hash_map<const CommandInfo*, CommandPolicy> policies_;
  CommandPolicy fallback_{.route = CommandRoute::kUnsupported,
                          .error = "ERR slotpilot: command not supported"};
};

}  // namespace

std::string DisplayName(const CommandInfo& command) {
  std::string name = ToUpper(command.full_name);
  for (char& c : name) {
    if (c == '|') c = ' ';
  }
  return name;
}

const CommandPolicy& PolicyFor(const CommandInfo* command, bool allow_admin_commands) {
  static const PolicyTable* strict = new PolicyTable(false);
  static const PolicyTable* admin = new PolicyTable(true);
  return (allow_admin_commands ? admin : strict)->Get(command);
}

}  // namespace slotpilot::proxy
