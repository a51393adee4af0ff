// The Redis 7.0 command table: arity, flags and key specs of every command and subcommand,
// generated from a real redis-server's COMMAND INFO by protocol/tools/gen_command_table.py and
// checked in as command_table_data.inc. Key extraction follows Redis's key specs
// (getKeysUsingKeySpecs in db.c) plus the special forms Redis resolves with a getkeys procedure.
//
// All data is static and immutable: safe to read from any thread.
#ifndef SLOTPILOT_PROTOCOL_COMMAND_TABLE_H_
#define SLOTPILOT_PROTOCOL_COMMAND_TABLE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace slotpilot::protocol {

// Command flags as COMMAND INFO reports them.
enum CommandFlag : uint32_t {
  kCmdWrite = 1u << 0,
  kCmdReadonly = 1u << 1,
  kCmdDenyOom = 1u << 2,
  kCmdModule = 1u << 3,
  kCmdAdmin = 1u << 4,
  kCmdPubsub = 1u << 5,
  kCmdNoscript = 1u << 6,
  kCmdBlocking = 1u << 7,
  kCmdLoading = 1u << 8,
  kCmdStale = 1u << 9,
  kCmdSkipMonitor = 1u << 10,
  kCmdSkipSlowlog = 1u << 11,
  kCmdAsking = 1u << 12,
  kCmdFast = 1u << 13,
  kCmdNoAuth = 1u << 14,
  kCmdMayReplicate = 1u << 15,
  kCmdNoMandatoryKeys = 1u << 16,
  kCmdNoMulti = 1u << 17,
  kCmdMovableKeys = 1u << 18,
  kCmdAllowBusy = 1u << 19,
  kCmdNoAsyncLoading = 1u << 20,
};

// Key-spec flags (COMMAND INFO key_specs[].flags).
enum KeySpecFlag : uint32_t {
  kKeyRO = 1u << 0,
  kKeyRW = 1u << 1,
  kKeyOW = 1u << 2,
  kKeyRM = 1u << 3,
  kKeyAccess = 1u << 4,
  kKeyUpdate = 1u << 5,
  kKeyInsert = 1u << 6,
  kKeyDelete = 1u << 7,
  kKeyNotKey = 1u << 8,  // e.g. SPUBLISH's shard channel: hashed to a slot but not a key
  kKeyIncomplete = 1u << 9,
  kKeyVariableFlags = 1u << 10,
};

struct BeginSearch {
  enum class Type : uint8_t { kInvalid, kIndex, kKeyword, kUnknown };
  Type type = Type::kInvalid;
  int index = 0;             // kIndex: argv index of the first key
  std::string_view keyword;  // kKeyword: upper-case keyword, e.g. "STREAMS"
  int start_from = 0;        // kKeyword: where to start looking (negative: from the end)
};

struct FindKeys {
  enum class Type : uint8_t { kInvalid, kRange, kKeynum, kUnknown };
  Type type = Type::kInvalid;
  int last_key = 0;      // kRange: relative index of the last key (-1: up to the end)
  int key_step = 1;      // kRange and kKeynum
  int limit = 0;         // kRange: with last_key -1, take 1/limit of the remaining args (0: all)
  int keynum_index = 0;  // kKeynum: relative index of the argument holding the key count
  int first_key = 0;     // kKeynum: relative index of the first key
};

struct KeySpec {
  BeginSearch begin;
  FindKeys find;
  uint32_t flags = 0;  // KeySpecFlag bits
};

// The getkeys procedure Redis 7.0 falls back to when a command's key specs fail (invalid,
// incomplete or unknown specs) or cannot be trusted (variable flags). Not in COMMAND INFO: the
// generator declares it per command and checks it against the movablekeys flag.
enum class GetKeysProc : uint8_t {
  kNone,
  kFirstArg,         // SET, BITFIELD: argv[1]
  kNumkeysAt1,       // ZUNION, ZINTER, ZDIFF, ZINTERCARD, SINTERCARD, LMPOP, ZMPOP: numkeys key...
  kNumkeysAt2,       // EVAL*, FCALL*, BLMPOP, BZMPOP: x numkeys key...
  kDestThenNumkeys,  // ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE: dest numkeys key...
  kSort,             // SORT key ... [STORE dest]
  kSortRo,           // SORT_RO key
  kMigrate,          // MIGRATE host port key|"" db timeout ... [KEYS key...]
  kGeoradius,        // GEORADIUS[BYMEMBER] key ... [STORE key] [STOREDIST key]
  kXread,            // XREAD[GROUP] ... STREAMS key... id...
};

// Cluster routing tips (COMMAND INFO tips "request_policy:..." / "response_policy:...").
enum class RequestPolicy : uint8_t { kDefault, kAllNodes, kAllShards, kMultiShard, kSpecial };
enum class ResponsePolicy : uint8_t {
  kDefault,
  kOneSucceeded,
  kAllSucceeded,
  kAggLogicalAnd,
  kAggLogicalOr,
  kAggMin,
  kAggMax,
  kAggSum,
  kSpecial,
};

struct CommandInfo {
  std::string_view name;       // lower case: "get", or the subcommand part: "get" of CONFIG GET
  std::string_view full_name;  // "get", "config|get" (as Redis names it in errors)
  int arity = 0;               // Redis convention: N exact, -N at least N (counting the name)
  uint32_t flags = 0;          // CommandFlag bits
  const KeySpec* key_specs = nullptr;
  uint16_t key_spec_count = 0;
  const CommandInfo* subcommands = nullptr;
  uint16_t subcommand_count = 0;
  GetKeysProc getkeys = GetKeysProc::kNone;
  RequestPolicy request_policy = RequestPolicy::kDefault;
  ResponsePolicy response_policy = ResponsePolicy::kDefault;

  bool has(CommandFlag f) const { return (flags & f) != 0; }
  absl::Span<const KeySpec> specs() const { return {key_specs, key_spec_count}; }
  absl::Span<const CommandInfo> subs() const { return {subcommands, subcommand_count}; }
};

// Case-insensitive lookup of a top-level command; nullptr when unknown. Allocation-free.
const CommandInfo* LookupCommand(std::string_view name);
// Case-insensitive lookup of a subcommand ("GET" for CONFIG); nullptr when unknown.
const CommandInfo* LookupSubcommand(const CommandInfo& parent, std::string_view name);
// Every top-level command, sorted by name (for COMMAND COUNT style use and tests).
absl::Span<const CommandInfo> AllCommands();
// The redis-server version the table was generated from, e.g. "7.0.15".
std::string_view CommandTableRedisVersion();

// Resolves argv[0] (and argv[1] for container commands such as CONFIG, CLIENT, OBJECT) to the
// command Redis would run, checking arity like Redis's processCommand. On failure the status
// message is the exact error text Redis 7.0 sends (without the leading "-"), e.g.
// "ERR unknown command 'foo', with args beginning with: 'a' ",
// "ERR unknown subcommand 'x'. Try CONFIG HELP.",
// "ERR wrong number of arguments for 'get' command" (EXEC's is "EXECABORT Transaction discarded
// because of: wrong number of arguments for 'exec' command"). Codes: NotFound for an unknown
// command or subcommand, InvalidArgument for a wrong arity or an empty argv.
absl::StatusOr<const CommandInfo*> ResolveCommand(absl::Span<const std::string_view> argv);

// Argument positions of the keys of argv, as COMMAND GETKEYS would report them (key specs plus
// the special forms: EVAL/FCALL numkeys, ZUNIONSTORE numkeys, XREAD STREAMS, MIGRATE KEYS,
// SORT STORE, ...). Shard channels (kKeyNotKey) are included only when include_not_keys.
//
// `cmd` is what ResolveCommand returned (the subcommand for OBJECT ENCODING etc.) and argv the
// whole request; positions index argv and come in Redis's order. *positions is cleared first.
// OK with no positions for commands without keys. Errors: the arity error ResolveCommand gives,
// or "ERR Invalid arguments specified for command" (GETKEYS's text) when a command needs keys
// and its arguments name none (bad numkeys, XREAD without STREAMS, ...). Commands whose keys
// are optional (EVAL, FCALL: no_mandatory_keys) and shard channels never fail that way.
// Allocation-free unless a command has more than 8 keys.
using KeyPositions = absl::InlinedVector<uint32_t, 8>;
absl::Status GetKeyPositions(const CommandInfo& cmd, absl::Span<const std::string_view> argv,
                             KeyPositions* positions, bool include_not_keys = false);

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_COMMAND_TABLE_H_
