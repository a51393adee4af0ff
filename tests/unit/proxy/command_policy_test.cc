#include "proxy/command_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/command_table.h"
#include "protocol/strings.h"

namespace slotpilot::proxy {
namespace {

using protocol::CommandInfo;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// "get" or "config set": a top-level command or a subcommand, looked up as a client would.
const CommandInfo* Lookup(std::string_view name) {
  size_t space = name.find(' ');
  const CommandInfo* parent = protocol::LookupCommand(name.substr(0, space));
  if (parent == nullptr || space == std::string_view::npos) return parent;
  return protocol::LookupSubcommand(*parent, name.substr(space + 1));
}

const CommandPolicy& Policy(std::string_view name, bool admin = false) {
  const CommandInfo* c = Lookup(name);
  EXPECT_NE(c, nullptr) << name << " is not in the command table";
  return PolicyFor(c, admin);
}

void ExpectRoute(std::string_view name, CommandRoute route) {
  EXPECT_EQ(static_cast<int>(Policy(name).route), static_cast<int>(route)) << name;
}

TEST(CommandPolicyTest, SingleSlotCommandsRouteByKey) {
  for (std::string_view name :
       {"get", "set", "incr", "hset", "zadd", "lpush", "xadd", "eval", "evalsha", "object encoding",
        "memory usage", "expire", "getex", "bitfield", "sort", "georadius", "rename", "smove"}) {
    ExpectRoute(name, CommandRoute::kByKey);
    EXPECT_TRUE(Policy(name).error.empty()) << name;
    EXPECT_EQ(Policy(name).local, LocalCommand::kNone) << name;
  }
  EXPECT_EQ(Policy("get").command_class, CommandClass::kRead);
  EXPECT_EQ(Policy("set").command_class, CommandClass::kWrite);
}

TEST(CommandPolicyTest, MultiKeyCommandsAreSplitPerSlot) {
  const CommandPolicy& mget = Policy("mget");
  EXPECT_EQ(mget.route, CommandRoute::kSplitByKey);
  EXPECT_EQ(mget.merge, MergeKind::kArrayByKey);
  EXPECT_FALSE(mget.key_value_pairs);
  EXPECT_EQ(mget.command_class, CommandClass::kRead);

  const CommandPolicy& mset = Policy("mset");
  EXPECT_EQ(mset.route, CommandRoute::kSplitByKey);
  EXPECT_EQ(mset.merge, MergeKind::kAllOk);
  EXPECT_TRUE(mset.key_value_pairs) << "MSET k1 v1 k2 v2: each key carries its value";
  EXPECT_EQ(mset.command_class, CommandClass::kWrite);

  for (std::string_view name : {"del", "unlink", "exists", "touch"}) {
    const CommandPolicy& p = Policy(name);
    EXPECT_EQ(p.route, CommandRoute::kSplitByKey) << name;
    EXPECT_EQ(p.merge, MergeKind::kSumIntegers) << name;
    EXPECT_FALSE(p.key_value_pairs) << name;
    EXPECT_TRUE(p.error.empty()) << name;
  }
}

TEST(CommandPolicyTest, KeyspaceWideCommandsGoToEveryMaster) {
  const std::pair<std::string_view, MergeKind> cases[] = {
      {"dbsize", MergeKind::kSumIntegers},   {"keys", MergeKind::kConcatArrays},
      {"randomkey", MergeKind::kRandomNonNil}, {"flushall", MergeKind::kAllOk},
      {"script load", MergeKind::kSameReply}, {"script exists", MergeKind::kAndIntegers},
  };
  for (const auto& [name, merge] : cases) {
    const CommandPolicy& p = Policy(name);
    EXPECT_EQ(p.route, CommandRoute::kAllMasters) << name;
    EXPECT_EQ(p.merge, merge) << name;
    EXPECT_TRUE(p.error.empty()) << name;
  }
  EXPECT_EQ(Policy("scan").route, CommandRoute::kScan);
  EXPECT_TRUE(Policy("scan").error.empty());
}

TEST(CommandPolicyTest, KeylessCommandsAnyMasterAnswers) {
  for (std::string_view name :
       {"time", "command", "command count", "command docs", "command info", "publish", "lastsave",
        "config get", "pubsub channels", "pubsub numsub", "lolwut"}) {
    ExpectRoute(name, CommandRoute::kAnyMaster);
    EXPECT_TRUE(Policy(name).error.empty()) << name;
  }
  EXPECT_EQ(Policy("publish").command_class, CommandClass::kOther);
}

TEST(CommandPolicyTest, LocalCommandsAnsweredByTheProxy) {
  const std::pair<std::string_view, LocalCommand> cases[] = {
      {"ping", LocalCommand::kPing},
      {"echo", LocalCommand::kEcho},
      {"quit", LocalCommand::kQuit},
      {"select", LocalCommand::kSelect},
      {"hello", LocalCommand::kHello},
      {"auth", LocalCommand::kAuth},
      {"client setname", LocalCommand::kClientSetName},
      {"client getname", LocalCommand::kClientGetName},
      {"client id", LocalCommand::kClientId},
      {"info", LocalCommand::kInfo},
      {"cluster keyslot", LocalCommand::kClusterKeySlot},
      {"reset", LocalCommand::kReset},
      {"readonly", LocalCommand::kReadOnlyNoop},
      {"readwrite", LocalCommand::kReadOnlyNoop},
  };
  for (const auto& [name, local] : cases) {
    for (bool admin : {false, true}) {
      const CommandPolicy& p = Policy(name, admin);
      EXPECT_EQ(p.route, CommandRoute::kLocal) << name;
      EXPECT_EQ(p.local, local) << name;
      EXPECT_EQ(p.command_class, CommandClass::kLocal) << name;
      EXPECT_TRUE(p.error.empty()) << name;
    }
  }
}

TEST(CommandPolicyTest, ForbiddenCommandsNameThemselvesInTheError) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"monitor", "'MONITOR'"},
      {"cluster nodes", "'CLUSTER NODES'"},
      {"cluster setslot", "'CLUSTER SETSLOT'"},
      {"cluster", "'CLUSTER'"},
      {"config set", "'CONFIG SET'"},
      {"config rewrite", "'CONFIG REWRITE'"},
      {"shutdown", "'SHUTDOWN'"},
      {"debug", "'DEBUG'"},
      {"client kill", "'CLIENT KILL'"},
      {"client pause", "'CLIENT PAUSE'"},
      {"acl whoami", "'ACL WHOAMI'"},
      {"replicaof", "'REPLICAOF'"},
      {"asking", "'ASKING'"},
      {"migrate", "'MIGRATE'"},
  };
  for (const auto& [name, quoted] : cases) {
    const CommandPolicy& p = Policy(name);
    EXPECT_EQ(p.route, CommandRoute::kForbidden) << name;
    EXPECT_THAT(p.error, StartsWith("ERR ")) << name;
    EXPECT_THAT(p.error, HasSubstr(std::string(quoted))) << name;
    EXPECT_THAT(p.error, HasSubstr("not allowed")) << name;
    EXPECT_EQ(p.error.find('\r'), std::string::npos) << "no CRLF in the error line";
  }
  EXPECT_EQ(Policy("monitor").error, "ERR slotpilot: 'MONITOR' is not allowed through the proxy");
}

TEST(CommandPolicyTest, ScriptAndFunctionKillReachEveryMasterOnTheirOwnConnections) {
  // A runaway script blocks its master and the shared connection behind it: the kill must not
  // queue there, and must be allowed without --allow-admin-commands.
  for (std::string_view name : {"script kill", "function kill"}) {
    for (bool admin : {false, true}) {
      const CommandPolicy& p = Policy(name, admin);
      EXPECT_EQ(p.route, CommandRoute::kAllMasters) << name;
      EXPECT_EQ(p.merge, MergeKind::kAnyOk) << name;
      EXPECT_TRUE(p.own_connections) << name;
    }
  }
}

TEST(CommandPolicyTest, OrderingPointsAreExecWatchAndBlockingCommands) {
  using V = std::vector<std::string_view>;
  for (const V& argv : {V{"EXEC"}, V{"watch", "k"}, V{"BLPOP", "k", "0"}, V{"brpoplpush", "a", "b", "1"},
                        V{"XREAD", "BLOCK", "10", "STREAMS", "s", "$"}, V{"WAIT", "0", "0"}}) {
    EXPECT_TRUE(IsOrderingPoint(argv)) << argv[0];
  }
  for (const V& argv : {V{"GET", "k"}, V{"EXISTS", "k"}, V{"EVAL", "return 1", "0"}, V{"MULTI"},
                        V{"XADD", "s", "*", "f", "v"}, V{"nosuch"}, V{}, V{""}}) {
    EXPECT_FALSE(IsOrderingPoint(argv)) << (argv.empty() ? "(empty)" : argv[0]);
  }
}

TEST(CommandPolicyTest, UnsupportedCommandsGetAClearError) {
  // Keyless commands no merge across masters makes sense for yet.
  for (std::string_view name : {"pubsub shardnumsub", "config"}) {
    const CommandPolicy& p = Policy(name);
    EXPECT_EQ(p.route, CommandRoute::kUnsupported) << name;
    EXPECT_THAT(p.error, StartsWith("ERR ")) << name;
    EXPECT_THAT(p.error, HasSubstr("'" + DisplayName(*Lookup(name)) + "'")) << name;
    EXPECT_THAT(p.error, HasSubstr("not supported")) << name;
  }
  EXPECT_EQ(Policy("pubsub shardnumsub").error,
            "ERR slotpilot: 'PUBSUB SHARDNUMSUB' is not supported by the proxy yet");
  // Answered by the proxy about its own clients, or merged over every master.
  EXPECT_EQ(Policy("client list").local, LocalCommand::kClientList);
  EXPECT_EQ(Policy("client info").local, LocalCommand::kClientInfo);
  ExpectRoute("pubsub shardchannels", CommandRoute::kAllMasters);
}

TEST(CommandPolicyTest, PinnedConnectionCommandsHaveTheirOwnRoutes) {
  // Transactions and pub/sub are driven by the session (local state + a pinned upstream).
  EXPECT_EQ(Policy("multi").local, LocalCommand::kMulti);
  EXPECT_EQ(Policy("exec").local, LocalCommand::kExec);
  EXPECT_EQ(Policy("discard").local, LocalCommand::kDiscard);
  EXPECT_EQ(Policy("watch").local, LocalCommand::kWatch);
  EXPECT_EQ(Policy("subscribe").local, LocalCommand::kSubscribe);
  EXPECT_EQ(Policy("psubscribe").local, LocalCommand::kSubscribe);
  EXPECT_EQ(Policy("ssubscribe").local, LocalCommand::kShardSubscribe);
  for (std::string_view name : {"multi", "exec", "discard", "watch", "subscribe", "ssubscribe"}) {
    EXPECT_EQ(Policy(name).route, CommandRoute::kLocal) << name;
  }
  // Blocking commands get a dedicated upstream connection, never the shared pipeline.
  for (std::string_view name : {"blpop", "brpop", "blmove", "blmpop", "bzpopmin", "bzmpop", "wait",
                                "xread", "xreadgroup"}) {
    EXPECT_EQ(Policy(name).route, CommandRoute::kBlocking) << name;
  }
  EXPECT_TRUE(Policy("ping").allowed_when_subscribed);
  EXPECT_FALSE(Policy("get").allowed_when_subscribed);
  EXPECT_TRUE(Policy("exec").runs_in_multi);
  EXPECT_FALSE(Policy("get").runs_in_multi);
}

TEST(CommandPolicyTest, AdminModeOnlyRelaxesConfigWrites) {
  for (std::string_view name : {"config set", "config resetstat"}) {
    EXPECT_EQ(Policy(name, /*admin=*/false).route, CommandRoute::kForbidden) << name;
    const CommandPolicy& admin = Policy(name, /*admin=*/true);
    EXPECT_EQ(admin.route, CommandRoute::kAllMasters) << name << ": applied on every master";
    EXPECT_EQ(admin.merge, MergeKind::kAllOk) << name;
    EXPECT_TRUE(admin.error.empty()) << name;
  }
  EXPECT_EQ(Policy("config rewrite", true).route, CommandRoute::kForbidden);
  EXPECT_EQ(Policy("monitor", true).route, CommandRoute::kForbidden);
  EXPECT_EQ(Policy("shutdown", true).route, CommandRoute::kForbidden);
  EXPECT_EQ(Policy("get", true).route, CommandRoute::kByKey);
  EXPECT_EQ(Policy("config get", true).route, CommandRoute::kAnyMaster);
}

TEST(CommandPolicyTest, OnlyConnectionSetupIsAllowedBeforeAuth) {
  std::set<std::string> allowed;
  for (const CommandInfo& c : protocol::AllCommands()) {
    if (PolicyFor(&c, false).allowed_before_auth) allowed.insert(std::string(c.full_name));
    for (const CommandInfo& sub : c.subs()) {
      if (PolicyFor(&sub, false).allowed_before_auth) allowed.insert(std::string(sub.full_name));
    }
  }
  EXPECT_EQ(allowed, (std::set<std::string>{"auth", "hello", "quit", "reset"}));
  EXPECT_FALSE(Policy("ping").allowed_before_auth);
  EXPECT_FALSE(Policy("get").allowed_before_auth);
  EXPECT_FALSE(Policy("client setname").allowed_before_auth);
}

// Every command and subcommand Redis 7.0 knows has a coherent policy in both modes.
TEST(CommandPolicyTest, EveryCommandHasACoherentPolicy) {
  size_t commands = 0;
  std::map<CommandRoute, size_t> by_route;
  for (bool admin : {false, true}) {
    std::vector<const CommandInfo*> all;
    for (const CommandInfo& c : protocol::AllCommands()) {
      all.push_back(&c);
      for (const CommandInfo& sub : c.subs()) all.push_back(&sub);
    }
    for (const CommandInfo* c : all) {
      const CommandPolicy& p = PolicyFor(c, admin);
      EXPECT_EQ(&p, &PolicyFor(c, admin)) << "one policy object per command";
      std::string name = DisplayName(*c);
      ++by_route[p.route];
      ++commands;
      switch (p.route) {
        case CommandRoute::kForbidden:
        case CommandRoute::kUnsupported:
          EXPECT_THAT(p.error, HasSubstr("'" + name + "'")) << c->full_name;
          EXPECT_EQ(p.local, LocalCommand::kNone) << c->full_name;
          break;
        case CommandRoute::kLocal:
          EXPECT_NE(p.local, LocalCommand::kNone) << c->full_name;
          EXPECT_TRUE(p.error.empty()) << c->full_name;
          break;
        case CommandRoute::kByKey:
        case CommandRoute::kSplitByKey:
          EXPECT_TRUE(p.error.empty()) << c->full_name;
          EXPECT_GT(c->key_spec_count, 0) << c->full_name << " is routed by key but has no key spec";
          break;
        case CommandRoute::kAnyMaster:
        case CommandRoute::kAllMasters:
        case CommandRoute::kScan:
        case CommandRoute::kBlocking:
          EXPECT_TRUE(p.error.empty()) << c->full_name;
          EXPECT_EQ(p.local, LocalCommand::kNone) << c->full_name;
          break;
      }
      if (p.route != CommandRoute::kLocal) {
        EXPECT_EQ(p.local, LocalCommand::kNone) << c->full_name;
      }
      if (p.command_class == CommandClass::kWrite) {
        EXPECT_TRUE(c->has(protocol::kCmdWrite)) << c->full_name;
      }
    }
  }
  EXPECT_GT(commands, 2 * 350u) << "the whole 7.0 table: commands and subcommands";
  for (CommandRoute route : {CommandRoute::kByKey, CommandRoute::kAnyMaster, CommandRoute::kLocal,
                             CommandRoute::kForbidden, CommandRoute::kUnsupported, CommandRoute::kSplitByKey,
                             CommandRoute::kAllMasters, CommandRoute::kScan}) {
    EXPECT_GT(by_route[route], 0u) << "route " << static_cast<int>(route);
  }
}

TEST(CommandPolicyTest, UnknownCommandGetsTheFallback) {
  for (bool admin : {false, true}) {
    const CommandPolicy& p = PolicyFor(nullptr, admin);
    EXPECT_EQ(p.route, CommandRoute::kUnsupported);
    EXPECT_THAT(p.error, StartsWith("ERR "));
    EXPECT_FALSE(p.allowed_before_auth);
  }
}

TEST(CommandPolicyTest, LookupIsCaseInsensitive) {
  EXPECT_EQ(&PolicyFor(protocol::LookupCommand("gEt"), false), &Policy("get"));
  const CommandInfo* client = protocol::LookupCommand("CLIENT");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(PolicyFor(protocol::LookupSubcommand(*client, "SetName"), false).local, LocalCommand::kClientSetName);
}

TEST(DisplayNameTest, UpperCaseWithSpaceBetweenCommandAndSubcommand) {
  EXPECT_EQ(DisplayName(*Lookup("get")), "GET");
  EXPECT_EQ(DisplayName(*Lookup("config set")), "CONFIG SET");
  EXPECT_EQ(DisplayName(*Lookup("client setname")), "CLIENT SETNAME");
  EXPECT_EQ(DisplayName(*Lookup("restore-asking")), "RESTORE-ASKING");
  EXPECT_EQ(DisplayName(*Lookup("cluster keyslot")), "CLUSTER KEYSLOT");
}

}  // namespace
}  // namespace slotpilot::proxy
