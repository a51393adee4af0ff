#include "protocol/command_table.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "migration/redis_client.h"
#include "protocol/resp.h"
#include "tests/support/redis_server.h"

namespace slotpilot::protocol {
namespace {

using Argv = std::vector<std::string>;

std::vector<std::string_view> Views(const Argv& argv) {
  return std::vector<std::string_view>(argv.begin(), argv.end());
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  return out;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\0') {
      out += "\\0";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Describe(const Argv& argv) {
  std::string out;
  for (const std::string& a : argv) out += (out.empty() ? "" : " ") + ("'" + Printable(a) + "'");
  return out;
}

// The keys of argv as the table finds them (argv[pos] for each position), or the error text.
absl::StatusOr<std::vector<std::string>> TableKeys(const Argv& argv,
                                                   bool include_not_keys = false) {
  const std::vector<std::string_view> views = Views(argv);
  absl::StatusOr<const CommandInfo*> cmd = ResolveCommand(views);
  if (!cmd.ok()) return cmd.status();
  KeyPositions positions;
  absl::Status status = GetKeyPositions(**cmd, views, &positions, include_not_keys);
  if (!status.ok()) return status;
  std::vector<std::string> keys;
  for (uint32_t pos : positions) keys.push_back(argv.at(pos));
  return keys;
}

std::vector<uint32_t> Positions(const Argv& argv, bool include_not_keys = false) {
  const std::vector<std::string_view> views = Views(argv);
  absl::StatusOr<const CommandInfo*> cmd = ResolveCommand(views);
  EXPECT_TRUE(cmd.ok()) << cmd.status();
  if (!cmd.ok()) return {};
  KeyPositions positions;
  absl::Status status = GetKeyPositions(**cmd, views, &positions, include_not_keys);
  EXPECT_TRUE(status.ok()) << Describe(argv) << ": " << status;
  return std::vector<uint32_t>(positions.begin(), positions.end());
}

std::string ErrorOf(const Argv& argv) {
  const std::vector<std::string_view> views = Views(argv);
  absl::StatusOr<const CommandInfo*> cmd = ResolveCommand(views);
  if (!cmd.ok()) return std::string(cmd.status().message());
  KeyPositions positions;
  absl::Status status = GetKeyPositions(**cmd, views, &positions);
  return std::string(status.message());
}

// ---- Lookup -----------------------------------------------------------------------------------

TEST(CommandLookup, IsCaseInsensitive) {
  const CommandInfo* get = LookupCommand("get");
  ASSERT_NE(get, nullptr);
  EXPECT_EQ(get->name, "get");
  EXPECT_EQ(get->full_name, "get");
  EXPECT_EQ(get->arity, 2);
  EXPECT_TRUE(get->has(kCmdReadonly));
  EXPECT_TRUE(get->has(kCmdFast));
  EXPECT_EQ(LookupCommand("GET"), get);
  EXPECT_EQ(LookupCommand("gEt"), get);
  EXPECT_EQ(LookupCommand("GEORADIUSBYMEMBER_RO"), LookupCommand("georadiusbymember_ro"));
  EXPECT_NE(LookupCommand("RESTORE-ASKING"), nullptr);
}

TEST(CommandLookup, UnknownNamesAreNull) {
  EXPECT_EQ(LookupCommand(""), nullptr);
  EXPECT_EQ(LookupCommand("ge"), nullptr);
  EXPECT_EQ(LookupCommand("gett"), nullptr);
  EXPECT_EQ(LookupCommand("nosuchcommand"), nullptr);
  EXPECT_EQ(LookupCommand(std::string(10000, 'a')), nullptr);
  EXPECT_EQ(LookupCommand(std::string_view("get\0", 4)), nullptr);
  EXPECT_EQ(LookupCommand("config|get"), nullptr);  // subcommands are not top-level names
  EXPECT_EQ(LookupCommand("G\xc3\x89T"), nullptr);  // no Unicode case folding
}

TEST(CommandLookup, FindsEveryCommandAndSubcommandInAnyCase) {
  size_t subcommands = 0;
  std::string previous;
  for (const CommandInfo& cmd : AllCommands()) {
    EXPECT_LT(previous, cmd.name) << "AllCommands() is sorted by name";
    previous = std::string(cmd.name);
    EXPECT_EQ(LookupCommand(cmd.name), &cmd);
    EXPECT_EQ(LookupCommand(Upper(cmd.name)), &cmd);
    EXPECT_EQ(cmd.name, cmd.full_name);
    for (const CommandInfo& sub : cmd.subs()) {
      ++subcommands;
      EXPECT_EQ(LookupSubcommand(cmd, sub.name), &sub);
      EXPECT_EQ(LookupSubcommand(cmd, Upper(sub.name)), &sub);
      EXPECT_EQ(sub.full_name, std::string(cmd.name) + "|" + std::string(sub.name));
      EXPECT_EQ(sub.subcommand_count, 0);
    }
  }
  EXPECT_GE(AllCommands().size(), 200u);
  EXPECT_GE(subcommands, 100u);
}

TEST(CommandLookup, Subcommands) {
  const CommandInfo* config = LookupCommand("CONFIG");
  ASSERT_NE(config, nullptr);
  EXPECT_GT(config->subcommand_count, 0);
  const CommandInfo* get = LookupSubcommand(*config, "Get");
  ASSERT_NE(get, nullptr);
  EXPECT_EQ(get->full_name, "config|get");
  EXPECT_EQ(get->arity, -3);
  EXPECT_EQ(LookupSubcommand(*config, "nosuch"), nullptr);
  EXPECT_EQ(LookupSubcommand(*config, ""), nullptr);
  EXPECT_EQ(LookupSubcommand(*config, "getx"), nullptr);
  EXPECT_EQ(LookupSubcommand(*LookupCommand("get"), "get"), nullptr);  // no subcommands
  const CommandInfo* client = LookupCommand("client");
  ASSERT_NE(client, nullptr);
  EXPECT_NE(LookupSubcommand(*client, "NO-EVICT"), nullptr);
}

TEST(CommandLookup, TableData) {
  const CommandInfo* zunionstore = LookupCommand("zunionstore");
  ASSERT_NE(zunionstore, nullptr);
  ASSERT_EQ(zunionstore->key_spec_count, 2);
  const KeySpec& numkeys = zunionstore->specs()[1];
  EXPECT_EQ(numkeys.begin.type, BeginSearch::Type::kIndex);
  EXPECT_EQ(numkeys.begin.index, 2);
  EXPECT_EQ(numkeys.find.type, FindKeys::Type::kKeynum);
  EXPECT_EQ(numkeys.find.first_key, 1);
  EXPECT_EQ(numkeys.flags, kKeyRO | kKeyAccess);
  EXPECT_EQ(zunionstore->getkeys, GetKeysProc::kDestThenNumkeys);
  EXPECT_TRUE(zunionstore->has(kCmdMovableKeys));

  const CommandInfo* xread = LookupCommand("xread");
  ASSERT_NE(xread, nullptr);
  ASSERT_EQ(xread->key_spec_count, 1);
  EXPECT_EQ(xread->specs()[0].begin.type, BeginSearch::Type::kKeyword);
  EXPECT_EQ(xread->specs()[0].begin.keyword, "STREAMS");
  EXPECT_EQ(xread->specs()[0].find.limit, 2);

  const CommandInfo* del = LookupCommand("del");
  ASSERT_NE(del, nullptr);
  EXPECT_EQ(del->request_policy, RequestPolicy::kMultiShard);
  EXPECT_EQ(del->response_policy, ResponsePolicy::kAggSum);
  EXPECT_EQ(LookupCommand("keys")->request_policy, RequestPolicy::kAllShards);
  EXPECT_EQ(LookupCommand("spublish")->specs()[0].flags, kKeyNotKey);
  EXPECT_FALSE(CommandTableRedisVersion().empty());
}

// ---- ResolveCommand: arity and error texts -----------------------------------------------------

TEST(CommandResolve, ResolvesCommandsAndSubcommands) {
  absl::StatusOr<const CommandInfo*> get = ResolveCommand(Views({"GET", "k"}));
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ((*get)->full_name, "get");
  absl::StatusOr<const CommandInfo*> encoding = ResolveCommand(Views({"object", "ENCODING", "k"}));
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  EXPECT_EQ((*encoding)->full_name, "object|encoding");
  EXPECT_FALSE(ResolveCommand({}).ok());
}

TEST(CommandResolve, ArityErrors) {
  EXPECT_EQ(ErrorOf({"get"}), "ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(ErrorOf({"GET", "a", "b"}), "ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(ErrorOf({"mset", "a"}), "ERR wrong number of arguments for 'mset' command");
  EXPECT_EQ(ErrorOf({"CONFIG"}), "ERR wrong number of arguments for 'config' command");
  EXPECT_EQ(ErrorOf({"config", "get"}), "ERR wrong number of arguments for 'config|get' command");
  EXPECT_EQ(ErrorOf({"OBJECT", "encoding"}),
            "ERR wrong number of arguments for 'object|encoding' command");
  EXPECT_EQ(ErrorOf({"EXEC", "x"}),
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' "
            "command");
  EXPECT_TRUE(ResolveCommand(Views({"mset", "a", "b", "c"})).ok());  // -3: at least three
  EXPECT_EQ(ResolveCommand(Views({"get"})).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommandResolve, UnknownCommandText) {
  EXPECT_EQ(ErrorOf({"foo"}), "ERR unknown command 'foo', with args beginning with: ");
  EXPECT_EQ(ErrorOf({"foo", "a", "b"}),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
  EXPECT_EQ(ErrorOf({"fo\r\no", "a\nb"}),
            "ERR unknown command 'fo  o', with args beginning with: 'a b' ");
  EXPECT_EQ(ResolveCommand(Views({"foo"})).status().code(), absl::StatusCode::kNotFound);
  // The name is cut at 128 bytes; args are added while the list is shorter than 128 bytes,
  // each cut to what remains of the budget.
  const std::string long_name(200, 'n');
  EXPECT_EQ(ErrorOf({long_name}),
            "ERR unknown command '" + std::string(128, 'n') + "', with args beginning with: ");
  const std::string arg120(120, 'x');
  EXPECT_EQ(ErrorOf({"foo", arg120, "abcdefghij", "zzz"}),
            "ERR unknown command 'foo', with args beginning with: '" + arg120 + "' 'abcde' ");
  // C strings: an argument ends at its first NUL.
  EXPECT_EQ(ErrorOf({"foo", std::string("ab\0cd", 5)}),
            "ERR unknown command 'foo', with args beginning with: 'ab' ");
}

TEST(CommandResolve, UnknownSubcommandText) {
  EXPECT_EQ(ErrorOf({"config", "nosuch"}), "ERR unknown subcommand 'nosuch'. Try CONFIG HELP.");
  EXPECT_EQ(ErrorOf({"Client", "x\r\ny", "z"}), "ERR unknown subcommand 'x  y'. Try CLIENT HELP.");
  EXPECT_EQ(ErrorOf({"xinfo", std::string(300, 's')}),
            "ERR unknown subcommand '" + std::string(128, 's') + "'. Try XINFO HELP.");
}

// ---- Key positions ----------------------------------------------------------------------------

using Pos = std::vector<uint32_t>;

TEST(CommandKeys, IndexAndRangeSpecs) {
  EXPECT_EQ(Positions({"GET", "k"}), Pos({1}));
  EXPECT_EQ(Positions({"mget", "a", "b", "c"}), Pos({1, 2, 3}));
  EXPECT_EQ(Positions({"MSET", "a", "1", "b", "2"}), Pos({1, 3}));
  EXPECT_EQ(Positions({"blpop", "a", "b", "0"}), Pos({1, 2}));  // last key -2
  EXPECT_EQ(Positions({"rename", "a", "b"}), Pos({1, 2}));
  EXPECT_EQ(Positions({"lmove", "a", "b", "LEFT", "RIGHT"}), Pos({1, 2}));
  EXPECT_EQ(Positions({"object", "encoding", "k"}), Pos({2}));
  EXPECT_EQ(Positions({"MEMORY", "usage", "k", "SAMPLES", "5"}), Pos({2}));
  EXPECT_EQ(Positions({"xinfo", "STREAM", "k", "FULL"}), Pos({2}));
  EXPECT_EQ(Positions({"set", "k", "v", "GET"}), Pos({1}));  // variable flags: procedure
  EXPECT_EQ(Positions({"bitfield", "k", "GET", "u8", "0"}), Pos({1}));
}

TEST(CommandKeys, CommandsWithoutKeys) {
  EXPECT_EQ(Positions({"ping"}), Pos());
  EXPECT_EQ(Positions({"config", "get", "maxmemory"}), Pos());
  EXPECT_EQ(Positions({"publish", "ch", "m"}), Pos());
}

TEST(CommandKeys, ShardChannelsOnlyWhenAsked) {
  EXPECT_EQ(Positions({"spublish", "ch", "m"}), Pos());
  EXPECT_EQ(Positions({"spublish", "ch", "m"}, true), Pos({1}));
  EXPECT_EQ(Positions({"ssubscribe", "a", "b"}, true), Pos({1, 2}));
  EXPECT_EQ(Positions({"sunsubscribe"}, true), Pos());
  EXPECT_EQ(Positions({"sunsubscribe", "a"}, true), Pos({1}));
}

TEST(CommandKeys, Numkeys) {
  EXPECT_EQ(Positions({"zunionstore", "d", "2", "a", "b", "WEIGHTS", "1", "2"}), Pos({1, 3, 4}));
  EXPECT_EQ(Positions({"ZUNION", "2", "a", "b", "WITHSCORES"}), Pos({2, 3}));
  EXPECT_EQ(Positions({"zintercard", "1", "a", "LIMIT", "5"}), Pos({2}));
  EXPECT_EQ(Positions({"sintercard", "2", "a", "b"}), Pos({2, 3}));
  EXPECT_EQ(Positions({"lmpop", "2", "a", "b", "LEFT"}), Pos({2, 3}));
  EXPECT_EQ(Positions({"blmpop", "0", "1", "a", "LEFT"}), Pos({3}));
  EXPECT_EQ(Positions({"bzmpop", "0", "2", "a", "b", "MIN"}), Pos({3, 4}));
  EXPECT_EQ(Positions({"eval", "return 1", "2", "a", "b", "arg"}), Pos({3, 4}));
  EXPECT_EQ(Positions({"fcall_ro", "f", "1", "a"}), Pos({3}));
  // Keys are optional for scripts: a bad count means no keys, not an error.
  EXPECT_EQ(Positions({"eval", "s", "0"}), Pos());
  EXPECT_EQ(Positions({"EVAL", "s", "1"}), Pos());
  EXPECT_EQ(Positions({"evalsha", "s", "-1", "a"}), Pos());
  // The spec rejects "1abc"; the procedure's atoi() reads 1 and puts the destination last.
  EXPECT_EQ(Positions({"zunionstore", "d", "1abc", "a"}), Pos({3, 1}));
  EXPECT_EQ(Positions({"zunion", " 1", "a"}), Pos({2}));
  // Redis keeps the count in a C int: 2^32 + 1 wraps to 1.
  EXPECT_EQ(Positions({"zunion", "4294967297", "a"}), Pos({2}));
}

TEST(CommandKeys, NumkeysErrors) {
  const std::string invalid = "ERR Invalid arguments specified for command";
  EXPECT_EQ(ErrorOf({"zunionstore", "d", "0", "a"}), invalid);
  EXPECT_EQ(ErrorOf({"zunionstore", "d", "3", "a", "b"}), invalid);
  EXPECT_EQ(ErrorOf({"zunionstore", "d", "-1", "a"}), invalid);
  EXPECT_EQ(ErrorOf({"zinter", "x", "a"}), invalid);
  EXPECT_EQ(ErrorOf({"lmpop", "99999999999999999999", "a", "LEFT"}), invalid);
  EXPECT_EQ(ErrorOf({"zinter"}), "ERR wrong number of arguments for 'zinter' command");
}

TEST(CommandKeys, XreadStreams) {
  EXPECT_EQ(Positions({"XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"}),
            Pos({6, 7}));
  EXPECT_EQ(Positions({"xreadgroup", "GROUP", "g", "c", "NOACK", "STREAMS", "a", ">"}), Pos({6}));
  // The spec halves what follows STREAMS, so an odd count still names keys.
  EXPECT_EQ(Positions({"xread", "STREAMS", "a", "b", "0"}), Pos({2}));
  EXPECT_EQ(ErrorOf({"xread", "COUNT", "1", "STREAMS", "a"}),
            "ERR Invalid arguments specified for command");
  EXPECT_EQ(ErrorOf({"xread", "COUNT", "1", "a"}), "ERR Invalid arguments specified for command");
}

TEST(CommandKeys, SortStore) {
  EXPECT_EQ(Positions({"sort", "k"}), Pos({1}));
  EXPECT_EQ(Positions({"SORT", "k", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "STORE", "d"}),
            Pos({1, 10}));
  EXPECT_EQ(Positions({"sort", "k", "store", "d1", "STORE", "d2"}), Pos({1, 5}));
  EXPECT_EQ(Positions({"sort", "k", "STORE"}), Pos({1}));
  EXPECT_EQ(Positions({"sort", "k", "GET", "store", "x"}), Pos({1}));
  EXPECT_EQ(Positions({"sort_ro", "k", "BY", "x", "GET", "y"}), Pos({1}));
}

TEST(CommandKeys, MigrateKeys) {
  EXPECT_EQ(Positions({"migrate", "h", "6379", "k", "0", "5000"}), Pos({3}));
  EXPECT_EQ(Positions({"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "KEYS", "a", "b"}),
            Pos({8, 9}));
  EXPECT_EQ(Positions({"migrate", "h", "6379", "", "0", "5000", "AUTH", "pw", "keys", "a"}),
            Pos({9}));
  EXPECT_EQ(Positions({"migrate", "h", "6379", "", "0", "5000", "AUTH", "keys", "KEYS", "a"}),
            Pos({9}));
  EXPECT_EQ(ErrorOf({"migrate", "h", "6379", "k", "0", "5000", "KEYS", "a"}),
            "ERR Invalid arguments specified for command");
  EXPECT_EQ(Positions({"migrate", "h", "6379", "", "0", "5000"}), Pos({3}));
}

TEST(CommandKeys, GeoradiusStore) {
  EXPECT_EQ(Positions({"georadius", "k", "0", "0", "1", "km"}), Pos({1}));
  EXPECT_EQ(Positions({"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"}), Pos({1, 7}));
  EXPECT_EQ(Positions({"georadius", "k", "0", "0", "1", "km", "STOREDIST", "d"}), Pos({1, 7}));
  EXPECT_EQ(Positions({"georadius", "k", "0", "0", "1", "km", "STORE", "a", "STOREDIST", "b"}),
            Pos({1, 7, 9}));
  EXPECT_EQ(Positions({"georadiusbymember", "k", "m", "1", "km", "STORE", "d"}), Pos({1, 6}));
  EXPECT_EQ(Positions({"georadius", "k", "0", "0", "1", "km", "STORE"}), Pos({1}));
}

TEST(CommandKeys, WrongArityIsAnError) {
  const CommandInfo* get = LookupCommand("get");
  ASSERT_NE(get, nullptr);
  KeyPositions positions;
  const std::vector<std::string_view> argv = {"get"};
  absl::Status status = GetKeyPositions(*get, argv, &positions);
  EXPECT_EQ(status.message(), "ERR wrong number of arguments for 'get' command");
  EXPECT_TRUE(positions.empty());
}

// ---- Against a live redis-server ---------------------------------------------------------------

// Hand-written forms: every key-spec shape, the getkeys procedures and their edge cases,
// subcommands, and commands without keys. Arguments are distinct so keys compare by name.
std::vector<Argv> SpecialForms() {
  const std::string nul_arg("st\0re", 5);
  return {
      // index / range
      {"GET", "k"},
      {"get", "k"},
      {"StrLen", "k"},
      {"MGET", "a", "b", "c"},
      {"MSET", "a", "1", "b", "2"},
      {"MSET", "a", "1", "b"},
      {"MSETNX", "a", "1", "b", "2"},
      {"DEL", "a", "b", "c"},
      {"UNLINK", "a"},
      {"EXISTS", "a", "b"},
      {"TOUCH", "a", "b"},
      {"WATCH", "a", "b"},
      {"RENAME", "a", "b"},
      {"RENAMENX", "a", "b"},
      {"COPY", "a", "b"},
      {"COPY", "a", "b", "DB", "1", "REPLACE"},
      {"SMOVE", "a", "b", "m"},
      {"LMOVE", "a", "b", "LEFT", "RIGHT"},
      {"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"},
      {"RPOPLPUSH", "a", "b"},
      {"BRPOPLPUSH", "a", "b", "0"},
      {"BLPOP", "a", "b", "0"},
      {"BRPOP", "a", "0"},
      {"BZPOPMIN", "a", "b", "0"},
      {"BZPOPMAX", "a", "0"},
      {"SDIFFSTORE", "d", "a", "b"},
      {"SUNIONSTORE", "d", "a"},
      {"SINTER", "a", "b"},
      {"PFMERGE", "d", "a", "b"},
      {"PFCOUNT", "a", "b"},
      {"BITOP", "AND", "d", "a", "b"},
      {"BITCOUNT", "k", "0", "1"},
      {"LCS", "a", "b", "LEN"},
      {"SMISMEMBER", "k", "a", "b"},
      {"RESTORE", "k", "0", "payload", "REPLACE"},
      {"GETEX", "k", "PERSIST"},
      {"GETDEL", "k"},
      {"EXPIRE", "k", "10", "NX"},
      {"ZRANGESTORE", "d", "s", "0", "1"},
      {"GEOSEARCHSTORE", "d", "s", "FROMMEMBER", "m", "BYRADIUS", "1", "km"},
      {"GEORADIUS_RO", "k", "0", "0", "1", "km"},
      {"OBJECT", "ENCODING", "k"},
      {"object", "freq", "k"},
      {"Object", "IdleTime", "k"},
      {"OBJECT", "REFCOUNT", "k"},
      {"MEMORY", "USAGE", "k"},
      {"MEMORY", "USAGE", "k", "SAMPLES", "5"},
      {"XINFO", "STREAM", "k"},
      {"XINFO", "STREAM", "k", "FULL", "COUNT", "5"},
      {"XINFO", "GROUPS", "k"},
      {"XINFO", "CONSUMERS", "k", "g"},
      {"XGROUP", "CREATE", "k", "g", "$", "MKSTREAM"},
      {"XGROUP", "SETID", "k", "g", "0"},
      {"XGROUP", "DESTROY", "k", "g"},
      {"XGROUP", "CREATECONSUMER", "k", "g", "c"},
      {"XGROUP", "DELCONSUMER", "k", "g", "c"},
      {"XADD", "k", "*", "f", "v"},
      {"XACK", "k", "g", "1-0"},
      {"XAUTOCLAIM", "k", "g", "c", "0", "0"},
      {"SET", "k", "v"},
      {"SET", "k", "v", "GET"},
      {"set", "k", "v", "EX", "10", "get"},
      {"BITFIELD", "k", "GET", "u8", "0"},
      {"BITFIELD_RO", "k", "GET", "u8", "0"},
      // numkeys
      {"ZUNIONSTORE", "d", "2", "a", "b"},
      {"ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"},
      {"ZUNIONSTORE", "d", "0", "a"},
      {"ZUNIONSTORE", "d", "3", "a", "b"},
      {"ZUNIONSTORE", "d", "-1", "a"},
      {"ZUNIONSTORE", "d", "1abc", "a"},
      {"ZUNIONSTORE", "d", "01", "a"},
      {"ZUNIONSTORE", "d", "+1", "a"},
      {"ZUNIONSTORE", "d", " 1", "a"},
      {"ZINTERSTORE", "d", "1", "a"},
      {"ZDIFFSTORE", "d", "2", "a", "b"},
      {"ZUNION", "2", "a", "b", "WITHSCORES"},
      {"ZINTER", "1", "a"},
      {"ZDIFF", "2", "a", "b"},
      {"ZINTERCARD", "2", "a", "b", "LIMIT", "1"},
      {"ZUNION", "4294967297", "a"},
      {"ZUNION", "99999999999999999999", "a"},
      {"ZUNION", "9223372036854775808", "a"},
      {"ZUNION", "2147483648", "a"},
      {"SINTERCARD", "1", "a"},
      {"SINTERCARD", "2", "a"},
      {"LMPOP", "2", "a", "b", "LEFT"},
      {"LMPOP", "1", "a", "RIGHT", "COUNT", "2"},
      {"BLMPOP", "0", "2", "a", "b", "LEFT"},
      {"ZMPOP", "1", "a", "MIN"},
      {"BZMPOP", "1", "2", "a", "b", "MAX"},
      {"EVAL", "s", "0"},
      {"EVAL", "s", "1", "k"},
      {"EVAL", "s", "2", "k1", "k2", "arg"},
      {"EVAL", "s", "3", "k"},
      {"EVAL", "s", "-1"},
      {"EVAL", "s", "abc"},
      {"EVAL", "s", "1"},
      {"EVAL", "s", "1abc", "k"},
      {"EVALSHA", "x", "1", "k"},
      {"EVAL_RO", "s", "1", "k"},
      {"EVALSHA_RO", "x", "2", "a", "b"},
      {"FCALL", "f", "2", "a", "b", "c"},
      {"FCALL_RO", "f", "0"},
      {"FCALL", "f", "1"},
      // keyword: STREAMS
      {"XREAD", "STREAMS", "a", "0"},
      {"XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "a", "b", "0", "0"},
      {"XREAD", "STREAMS", "a", "b", "0"},
      {"XREAD", "STREAMS", "a"},
      {"XREAD", "COUNT", "1", "STREAMS", "streams", "0"},
      {"XREAD", "BLOCK", "streams", "STREAMS", "a", "0"},
      {"XREAD", "COUNT", "1", "a", "b"},
      {"xread", "streams", "a", "b", "c", "1", "2", "3"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", ">"},
      {"XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "a", "b", ">", ">"},
      {"XREADGROUP", "GROUP", "streams", "c", "STREAMS", "a", "0"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", "0"},
      // keyword: STORE / STOREDIST
      {"GEORADIUS", "k", "0", "0", "1", "km"},
      {"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"},
      {"GEORADIUS", "k", "0", "0", "1", "km", "STOREDIST", "d"},
      {"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "a", "STOREDIST", "b"},
      {"GEORADIUS", "k", "0", "0", "1", "km", "STORE"},
      {"GEORADIUS", "k", "0", "0", "1", "km", "WITHDIST", "store", "d"},
      {"GEORADIUSBYMEMBER", "k", "m", "1", "km", "STORE", "d"},
      {"GEORADIUSBYMEMBER", "k", "m", "1", "km", "COUNT", "5", "STOREDIST", "d"},
      {"GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"},
      // keyword search backwards: MIGRATE KEYS
      {"MIGRATE", "h", "6379", "k", "0", "5000"},
      {"MIGRATE", "h", "6379", "", "0", "5000"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b", "c"},
      {"MIGRATE", "h", "6379", "k", "0", "5000", "KEYS", "a", "b"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "REPLACE", "KEYS", "a"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "AUTH", "pw", "KEYS", "a", "b"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "u", "keys", "KEYS", "a"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "KEYS"},
      {"MIGRATE", "h", "6379", "keys", "0", "5000"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "KEYS"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "AUTH", "keys", "KEYS", "a"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "keys", "keys", "KEYS", "a", "b"},
      {"MIGRATE", "h", "6379", "", "0", "5000", "auth", "KEYS", "a"},
      {"MIGRATE", "h", "6379", "k", "0", "5000", "REPLACE", "KEYS", "a"},
      // SORT
      {"SORT", "k"},
      {"SORT", "k", "STORE", "d"},
      {"SORT", "k", "BY", "w", "LIMIT", "0", "5", "GET", "#", "STORE", "d"},
      {"SORT", "k", "STORE", "d1", "STORE", "d2"},
      {"SORT", "k", "STORE"},
      {"SORT", "k", "LIMIT", "store", "x"},
      {"SORT", "k", "GET", "store", "x"},
      {"SORT", "k", "STORE", "store"},
      {"SORT", "k", nul_arg, "d"},
      {"SORT_RO", "k"},
      {"SORT_RO", "k", "BY", "x", "GET", "y"},
      // no keys
      {"PING", "x"},
      {"ECHO", "x"},
      {"INFO", "server"},
      {"CLIENT", "ID"},
      {"CLIENT", "LIST"},
      {"CLUSTER", "INFO"},
      {"CLUSTER", "KEYSLOT", "k"},
      {"CONFIG", "GET", "maxmemory"},
      {"COMMAND", "INFO", "get"},
      {"PUBLISH", "ch", "m"},
      {"SUBSCRIBE", "ch"},
      {"SPUBLISH", "ch", "m"},
      {"SSUBSCRIBE", "a", "b"},
      {"SUNSUBSCRIBE", "a"},
      {"PUBSUB", "CHANNELS"},
      {"SCRIPT", "EXISTS", "a"},
      {"FUNCTION", "LIST"},
      {"FLUSHALL", "ASYNC"},
      {"SELECT", "0"},
      {"KEYS", "*"},
      {"SCAN", "0"},
      {"WAIT", "0", "0"},
      // unknown command / subcommand, wrong arity
      {"NOSUCH", "a"},
      {"CONFIG", "NOSUCH"},
      {"OBJECT", "NOSUCH", "k"},
      {"GET", "a", "b"},
      {"XINFO", "STREAM"},
      {"OBJECT", "ENCODING"},
  };
}

// A form for every command and subcommand at its minimum arity and above, named in upper case
// (GETKEYS needs at least one argument after the name).
std::vector<Argv> GeneratedForms() {
  std::vector<Argv> forms;
  auto add = [&forms](Argv prefix, int arity) {
    std::vector<int> sizes =
        arity > 0 ? std::vector<int>{arity} : std::vector<int>{-arity, -arity + 1, -arity + 3};
    for (int argc : sizes) {
      Argv argv = prefix;
      while (static_cast<int>(argv.size()) < argc)
        argv.push_back("a" + std::to_string(argv.size()));
      if (argv.size() >= 2) forms.push_back(std::move(argv));
    }
  };
  for (const CommandInfo& cmd : AllCommands()) {
    if (cmd.subcommand_count == 0) add({Upper(cmd.name)}, cmd.arity);
    for (const CommandInfo& sub : cmd.subs())
      add({Upper(cmd.name), std::string(sub.name)}, sub.arity);
  }
  return forms;
}

// COMMAND GETKEYS's answer, or our equivalent, reduced to something comparable.
struct KeysOutcome {
  bool ok = false;
  std::vector<std::string> keys;  // when ok
  std::string error;              // when not ok: "unknown", "arity" or Redis's text
  bool operator==(const KeysOutcome& o) const {
    return ok == o.ok && keys == o.keys && error == o.error;
  }
};

void PrintTo(const KeysOutcome& o, std::ostream* os) {
  if (!o.ok) {
    *os << "error: " << o.error;
    return;
  }
  *os << "keys: [";
  for (const std::string& k : o.keys) *os << "'" << Printable(k) << "' ";
  *os << "]";
}

KeysOutcome ServerKeys(migration::RedisClient& client, const Argv& argv) {
  std::vector<std::string_view> request = {"COMMAND", "GETKEYS"};
  for (const std::string& a : argv) request.push_back(a);
  absl::StatusOr<RespValue> reply = client.Command(request);
  EXPECT_TRUE(reply.ok()) << reply.status();
  KeysOutcome out;
  if (!reply.ok()) return out;
  if (!reply->is_error()) {
    out.ok = true;
    for (const RespValue& key : reply->elements) out.keys.push_back(key.str);
    return out;
  }
  if (reply->str == "ERR The command has no key arguments") {
    out.ok = true;  // no keys is not an error for us
  } else if (reply->str == "ERR Invalid command specified") {
    out.error = "unknown";
  } else if (reply->str == "ERR Invalid number of arguments specified for command") {
    out.error = "arity";
  } else {
    out.error = reply->str;
  }
  return out;
}

// Redis's doesCommandHaveKeys: COMMAND GETKEYS tests it before the arity.
bool HasKeys(const CommandInfo& cmd) {
  if (cmd.getkeys != GetKeysProc::kNone) return true;
  for (const KeySpec& spec : cmd.specs()) {
    if ((spec.flags & kKeyNotKey) == 0) return true;
  }
  return false;
}

KeysOutcome OurKeys(const Argv& argv) {
  KeysOutcome out;
  const CommandInfo* cmd = argv.empty() ? nullptr : LookupCommand(argv[0]);
  if (cmd != nullptr && cmd->subcommand_count > 0 && argv.size() > 1) {
    cmd = LookupSubcommand(*cmd, argv[1]);
  }
  if (cmd != nullptr && !HasKeys(*cmd)) {
    out.ok = true;  // and, when the arity fits, GetKeyPositions must agree
    absl::StatusOr<std::vector<std::string>> keys = TableKeys(argv);
    if (keys.ok()) {
      EXPECT_TRUE(keys->empty()) << Describe(argv);
    }
    return out;
  }
  absl::StatusOr<std::vector<std::string>> keys = TableKeys(argv);
  if (keys.ok()) {
    out.ok = true;
    out.keys = *keys;
  } else if (keys.status().code() == absl::StatusCode::kNotFound) {
    out.error = "unknown";
  } else if (std::string(keys.status().message()).find("wrong number") != std::string::npos) {
    out.error = "arity";
  } else {
    out.error = std::string(keys.status().message());
  }
  return out;
}

class CommandLiveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> server = testing::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    absl::StatusOr<std::unique_ptr<migration::RedisClient>> client = server_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  static std::unique_ptr<testing::RedisServer> server_;
  std::unique_ptr<migration::RedisClient> client_;
};

std::unique_ptr<testing::RedisServer> CommandLiveTest::server_;

TEST_F(CommandLiveTest, KeyPositionsMatchCommandGetkeys) {
  std::vector<Argv> forms = SpecialForms();
  const size_t special = forms.size();
  for (Argv& argv : GeneratedForms()) forms.push_back(std::move(argv));
  std::set<Argv> distinct;
  for (const Argv& argv : forms) {
    if (!distinct.insert(argv).second) continue;
    EXPECT_EQ(OurKeys(argv), ServerKeys(*client_, argv)) << Describe(argv);
  }
  std::printf("[ compared ] %zu distinct forms with COMMAND GETKEYS (%zu hand-written)\n",
              distinct.size(), special);
  EXPECT_GE(special, 150u);
}

// Random argument lists built from the words the key finders look for, for every command (those
// with a getkeys procedure drawn more often): a differential test against the server.
TEST_F(CommandLiveTest, RandomArgumentsMatchCommandGetkeys) {
  const std::vector<std::string> words = {
      "STORE", "storedist", "STREAMS", "keys",  "AUTH",  "AUTH2", "COPY", "LIMIT",     "get",
      "BY",    "count",     "BLOCK",   "GROUP", "NOACK", "0",     "1",    "2",         "3",
      "-1",    "01",        " 1",      "1x",    "",      "k",     "#",    "4294967297"};
  std::vector<std::string> names;
  for (const CommandInfo& cmd : AllCommands()) {
    const int weight = cmd.getkeys != GetKeysProc::kNone ? 8 : 1;
    for (int i = 0; i < weight; ++i) names.emplace_back(cmd.name);
  }
  std::mt19937 rng(20240607);  // fixed seed: failures reproduce
  size_t compared = 0;
  for (int round = 0; round < 4000; ++round) {
    Argv argv = {names[rng() % names.size()]};
    const size_t extra = 1 + rng() % 11;
    for (size_t i = 0; i < extra; ++i) argv.push_back(words[rng() % words.size()]);
    EXPECT_EQ(OurKeys(argv), ServerKeys(*client_, argv)) << Describe(argv);
    ++compared;
  }
  EXPECT_EQ(compared, 4000u);
}

// Sends argv itself and expects the server's error to be ResolveCommand's message.
void ExpectSameRejection(migration::RedisClient& client, const Argv& argv) {
  absl::StatusOr<const CommandInfo*> ours = ResolveCommand(Views(argv));
  ASSERT_FALSE(ours.ok()) << Describe(argv);
  absl::StatusOr<RespValue> reply = client.Command(Views(argv));
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(reply->is_error()) << Describe(argv);
  EXPECT_EQ(std::string(ours.status().message()), reply->str) << Describe(argv);
}

TEST_F(CommandLiveTest, UnknownCommandTextsMatchServer) {
  const std::string a50(50, 'a');
  const std::vector<Argv> cases = {
      {"nosuch"},
      {"NoSuch", "a", "b"},
      {"nosuch", ""},
      {std::string(200, 'n'), "a"},
      {"nosuch", std::string(300, 'x')},
      {"nosuch", a50, a50, "0123456789abcdefghijklmnopqrstuvwxyz", "tail"},
      {"nosuch", std::string(120, 'y'), "abcdefghij", "zzz"},
      {"nosuch", std::string(122, 'y'), "ab", "c"},
      {"nosuch", "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",  "10",
       "11",     "12", "13", "14", "15", "16", "17", "18", "19", "20", "21",
       "22",     "23", "24", "25", "26", "27", "28", "29", "30"},
      {"no\r\nsuch", "a\rb", "c\nd"},
      {"nosuch", std::string("ab\0cd", 5), "e"},
      {std::string("get\0x", 5), "k"},
      {"config|get", "maxmemory"},
      {"ge", "k"},
  };
  for (const Argv& argv : cases) ExpectSameRejection(*client_, argv);
}

TEST_F(CommandLiveTest, UnknownSubcommandTextsMatchServer) {
  const std::vector<Argv> cases = {
      {"config", "nosuch"},
      {"CLIENT", "x\r\ny", "z"},
      {"object", std::string(200, 'o'), "k"},
      {"Xinfo", "nosuch", "k"},
      {"config", std::string("ab\0c", 4)},
      {"xgroup", ""},
      {"command", "nosuch"},
  };
  for (const Argv& argv : cases) ExpectSameRejection(*client_, argv);
}

// Every command and subcommand with too few or too many arguments. The server rejects these
// before running anything, so sending them is harmless.
TEST_F(CommandLiveTest, ArityTextsMatchServer) {
  size_t checked = 0;
  auto check = [&](Argv prefix, int arity) {
    std::vector<int> sizes = {arity > 0 ? arity + 1 : 0, arity > 0 ? arity - 1 : -arity - 1};
    for (int argc : sizes) {
      if (argc < static_cast<int>(prefix.size())) continue;
      Argv argv = prefix;
      while (static_cast<int>(argv.size()) < argc)
        argv.push_back("x" + std::to_string(argv.size()));
      ExpectSameRejection(*client_, argv);
      ++checked;
    }
  };
  for (const CommandInfo& cmd : AllCommands()) {
    check({Upper(cmd.name)}, cmd.arity);  // a container alone is its own arity error
    for (const CommandInfo& sub : cmd.subs())
      check({std::string(cmd.name), Upper(sub.name)}, sub.arity);
  }
  EXPECT_GE(checked, 300u);
}

TEST_F(CommandLiveTest, TableMatchesCommandList) {
  absl::StatusOr<RespValue> info = client_->Command({"INFO", "server"});
  ASSERT_TRUE(info.ok()) << info.status();
  const std::string version_line = "redis_version:" + std::string(CommandTableRedisVersion());
  ASSERT_NE(info->str.find(version_line + "\r\n"), std::string::npos)
      << "the table was generated from redis-server " << CommandTableRedisVersion()
      << "; regenerate it with protocol/tools/gen_command_table.py";

  absl::StatusOr<RespValue> list = client_->Command({"COMMAND", "LIST"});
  ASSERT_TRUE(list.ok()) << list.status();
  std::set<std::string> server_names;
  for (const RespValue& name : list->elements) server_names.insert(name.str);
  std::set<std::string> table_names;
  for (const CommandInfo& cmd : AllCommands()) {
    table_names.insert(std::string(cmd.full_name));
    for (const CommandInfo& sub : cmd.subs()) table_names.insert(std::string(sub.full_name));
  }
  EXPECT_EQ(table_names, server_names);
}

TEST(CommandTableGenerator, CheckedInTableIsUpToDate) {
  if (std::system("/usr/bin/python3 -c 'import redis' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 has no redis module";
  }
  // tests/unit/protocol/command_table_test.cc -> the repository root.
  std::string root = __FILE__;
  for (int i = 0; i < 4; ++i) root = root.substr(0, root.find_last_of('/'));
  const std::string command =
      "/usr/bin/python3 " + root + "/protocol/tools/gen_command_table.py --check 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_EQ(status, 0) << output;
}

}  // namespace
}  // namespace slotpilot::protocol
