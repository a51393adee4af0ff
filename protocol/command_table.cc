#include "protocol/command_table.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

namespace slotpilot::protocol {
namespace {

#include "protocol/command_table_data.inc"

// ---- Case-insensitive lookup ------------------------------------------------------------------
// Redis folds command names with tolower() in the C locale: ASCII only. Top-level commands are
// found through an open-addressing index built at compile time (linear probing); subcommands by
// binary search in their sorted array. This runs for every request: about 7 ns a lookup.

constexpr char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

constexpr size_t kIndexBits = 11;
constexpr size_t kIndexSize = size_t{1} << kIndexBits;  // 4 KiB; load factor about 1/8
constexpr size_t kIndexMask = kIndexSize - 1;

// Hashes the length and three sampled bytes (first, middle, last), folded with | 0x20 so that
// both cases of a letter agree; a loop over every byte measured 50% slower. Names the fold
// confuses (e.g. '_' and DEL) only share a hash: the comparison is exact.
constexpr size_t CaseFoldHash(std::string_view s) {
  if (s.empty()) return 0;
  const auto at = [s](size_t i) {
    return static_cast<uint32_t>(static_cast<uint8_t>(s[i]) | 0x20);
  };
  const uint32_t key = (static_cast<uint32_t>(s.size()) << 24) ^ (at(0) << 16) ^
                       (at(s.size() / 2) << 8) ^ at(s.size() - 1);
  return (key * 2654435769u) >> (32 - kIndexBits);  // Fibonacci hashing: the top bits
}

// `lower` is already lower case; `query` is in any case.
constexpr bool EqualsFolded(std::string_view lower, std::string_view query) {
  if (lower.size() != query.size()) return false;
  for (size_t i = 0; i < lower.size(); ++i) {
    if (lower[i] != AsciiLower(query[i])) return false;
  }
  return true;
}

// Three-way comparison of a lower-case name with a query in any case (byte order).
int CompareFolded(std::string_view lower, std::string_view query) {
  const size_t n = std::min(lower.size(), query.size());
  for (size_t i = 0; i < n; ++i) {
    const auto a = static_cast<uint8_t>(lower[i]);
    const auto b = static_cast<uint8_t>(AsciiLower(query[i]));
    if (a != b) return a < b ? -1 : 1;
  }
  return lower.size() == query.size() ? 0 : (lower.size() < query.size() ? -1 : 1);
}

static_assert(std::size(kCommands) * 4 <= kIndexSize, "grow kIndexSize");
static_assert(std::size(kCommands) < std::numeric_limits<uint16_t>::max());

struct CommandIndex {
  std::array<uint16_t, kIndexSize> slots{};  // position in kCommands + 1; 0 marks an empty slot
  size_t max_name_length = 0;
  size_t max_probes = 0;  // longest probe sequence of any stored name
};

constexpr CommandIndex BuildIndex() {
  CommandIndex index;
  for (size_t i = 0; i < std::size(kCommands); ++i) {
    size_t slot = CaseFoldHash(kCommands[i].name);
    size_t probes = 1;
    for (; index.slots[slot] != 0; ++probes) slot = (slot + 1) & kIndexMask;
    index.slots[slot] = static_cast<uint16_t>(i + 1);
    index.max_probes = std::max(index.max_probes, probes);
    index.max_name_length = std::max(index.max_name_length, kCommands[i].name.size());
  }
  return index;
}

constexpr CommandIndex kIndex = BuildIndex();
static_assert(kIndex.max_probes <= 4, "command index clusters: change the hash or the size");

// ---- Error texts (Redis 7.0 processCommand) --------------------------------------------------

constexpr size_t kErrorArgLimit = 128;  // Redis prints argv with "%.128s" and caps the arg list

// What printf("%s") prints of an sds argument: up to the first NUL byte.
std::string_view CString(std::string_view s) {
  const size_t nul = s.find('\0');
  return nul == std::string_view::npos ? s : s.substr(0, nul);
}

std::string_view Truncated(std::string_view s, size_t limit) { return CString(s).substr(0, limit); }

// rejectCommandFormat replaces CR and LF with spaces so the error stays on one line.
std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\r', ' ');
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// (Abseil's string helpers are avoided here: Debian's absl::string_view is not std::string_view.)
std::string UnknownCommandMessage(absl::Span<const std::string_view> argv) {
  std::string args;
  for (size_t i = 1; i < argv.size() && args.size() < kErrorArgLimit; ++i) {
    const size_t budget = kErrorArgLimit - args.size();  // measured before the quote
    args += '\'';
    args += Truncated(argv[i], budget);
    args += "' ";
  }
  std::string message = "ERR unknown command '";
  message += Truncated(argv[0], kErrorArgLimit);
  message += "', with args beginning with: ";
  message += args;
  return OneLine(std::move(message));
}

std::string UnknownSubcommandMessage(absl::Span<const std::string_view> argv) {
  std::string message = "ERR unknown subcommand '";
  message += Truncated(argv[1], kErrorArgLimit);
  message += "'. Try ";
  for (char c : CString(argv[0])) message += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  message += " HELP.";
  return OneLine(std::move(message));
}

std::string ArityMessage(const CommandInfo& cmd) {
  // Redis rejects a malformed EXEC through execCommandAbort, which rewords the error.
  std::string message =
      cmd.full_name == "exec" ? "EXECABORT Transaction discarded because of: " : "ERR ";
  message += "wrong number of arguments for '";
  message += cmd.full_name;
  message += "' command";
  return message;
}

bool ArityOk(const CommandInfo& cmd, size_t argc) {
  const auto arity = static_cast<int64_t>(cmd.arity);
  const auto n = static_cast<int64_t>(argc);
  return arity > 0 ? n == arity : n >= -arity;
}

// ---- Key specs (Redis 7.0 getKeysUsingKeySpecs) ------------------------------------------------

// strcasecmp of an argument with an option name: the argument ends at its first NUL, as in C.
bool IsOption(std::string_view arg, std::string_view option) {
  arg = CString(arg);
  if (arg.size() != option.size()) return false;
  for (size_t i = 0; i < arg.size(); ++i) {
    if (AsciiLower(arg[i]) != AsciiLower(option[i])) return false;
  }
  return true;
}

// Index of the argument after the keyword, or 0 when the keyword is absent. Like Redis, the
// search stops before argv[argc - 1] going forward and before argv[1] going backward.
int64_t FindKeyword(const BeginSearch& begin, int64_t argc,
                    absl::Span<const std::string_view> argv) {
  const bool forward = begin.start_from > 0;
  const int64_t start = forward ? begin.start_from : argc + begin.start_from;
  const int64_t end = forward ? argc - 1 : 1;
  for (int64_t i = start; i != end; i = start <= end ? i + 1 : i - 1) {
    if (i >= argc || i < 1) break;
    if (IsOption(argv[i], begin.keyword)) return i + 1;
  }
  return 0;
}

// Redis's string2ll restricted to what a key count accepts: a canonical non-negative decimal
// that fits a long long. Anything else (sign, leading zero, junk, overflow) is invalid.
bool ParseKeyCount(std::string_view s, int64_t* value) {
  if (s.empty() || s.size() >= 21) return false;
  if (s == "0") {
    *value = 0;
    return true;
  }
  if (s[0] < '1' || s[0] > '9') return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v > (std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(c - '0')) / 10) {
      return false;
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *value = static_cast<int64_t>(v);
  return true;
}

// Redis stores a parsed key count in an int: keep the low 32 bits, as the C cast does.
int64_t AsCInt(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// From where the begin-search step landed, sets the indexes of the spec's first and last keys
// (not yet bounds-checked). Returns false for an invalid spec.
bool FindKeyRange(const FindKeys& find, int64_t begin, int64_t argc,
                  absl::Span<const std::string_view> argv, int64_t* first, int64_t* last) {
  *first = begin;
  if (find.type == FindKeys::Type::kRange) {
    if (find.last_key >= 0) {
      *last = begin + find.last_key;
    } else if (find.limit == 0) {
      *last = argc + find.last_key;
    } else {
      *last = begin + ((argc - begin) / find.limit + find.last_key);
    }
    return true;
  }
  if (find.type != FindKeys::Type::kKeynum) return false;
  const int64_t count_at = begin + find.keynum_index;
  int64_t numkeys = 0;
  if (count_at >= argc || !ParseKeyCount(argv[count_at], &numkeys)) return false;
  *first = begin + find.first_key;
  *last = *first + AsCInt(numkeys) - 1;
  return true;
}

// Appends the positions the specs describe. Returns false when a spec is invalid or incomplete:
// Redis then discards them and asks the command's getkeys procedure.
bool KeysFromSpecs(const CommandInfo& cmd, absl::Span<const std::string_view> argv,
                   bool include_not_keys, KeyPositions* positions) {
  const auto argc = static_cast<int64_t>(argv.size());
  for (const KeySpec& spec : cmd.specs()) {
    if ((spec.flags & kKeyNotKey) != 0 && !include_not_keys) continue;
    int64_t begin = 0;
    if (spec.begin.type == BeginSearch::Type::kIndex) {
      begin = spec.begin.index;
    } else if (spec.begin.type == BeginSearch::Type::kKeyword) {
      begin = FindKeyword(spec.begin, argc, argv);
      if (begin == 0) continue;  // keyword absent: this spec has no keys
    } else {
      return false;
    }
    int64_t first = 0;
    int64_t last = 0;
    const int64_t step = spec.find.key_step;
    if (!FindKeyRange(spec.find, begin, argc, argv, &first, &last)) return false;
    if (last >= argc || last < first || first >= argc || step < 1) return false;
    for (int64_t i = first; i <= last; i += step) positions->push_back(static_cast<uint32_t>(i));
    if ((spec.flags & kKeyIncomplete) != 0) return false;
  }
  return true;
}

// ---- getkeys procedures (Redis 7.0 db.c) ------------------------------------------------------

// atoi() as glibc implements it: strtol (leading space, sign, digits, saturating), then the
// conversion to int, which keeps the low 32 bits.
int64_t CAtoi(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r'))) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  constexpr uint64_t kLimit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1;
  uint64_t v = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const auto digit = static_cast<uint64_t>(s[i] - '0');
    v = v > (kLimit - digit) / 10 ? kLimit : v * 10 + digit;
  }
  if (!negative) v = std::min<uint64_t>(v, kLimit - 1);
  const uint64_t as_long = negative ? 0 - v : v;  // two's complement, like strtol's result
  return static_cast<int32_t>(static_cast<uint32_t>(as_long));
}

// genericGetKeys: [store_at] count_at key... (store_at 0: no destination key).
void NumkeysKeys(int64_t store_at, int64_t count_at, int64_t first_at,
                 absl::Span<const std::string_view> argv, KeyPositions* positions) {
  const auto argc = static_cast<int64_t>(argv.size());
  if (count_at >= argc) return;
  const int64_t num = CAtoi(argv[count_at]);
  if (num < 1 || num > argc - first_at) return;  // the command will answer a syntax error
  for (int64_t i = 0; i < num; ++i) positions->push_back(static_cast<uint32_t>(first_at + i));
  if (store_at != 0) positions->push_back(static_cast<uint32_t>(store_at));
}

// SORT key [BY p] [LIMIT o c] [GET p]... [STORE dest]: the last STORE wins.
void SortKeys(absl::Span<const std::string_view> argv, KeyPositions* positions) {
  positions->push_back(1);
  uint32_t store = 0;
  for (size_t i = 2; i < argv.size(); ++i) {
    if (IsOption(argv[i], "limit")) {
      i += 2;
    } else if (IsOption(argv[i], "store") && i + 1 < argv.size()) {
      store = static_cast<uint32_t>(i + 1);  // the key itself is scanned as an option next
    } else if (IsOption(argv[i], "get") || IsOption(argv[i], "by")) {
      i += 1;
    }
  }
  if (store != 0) positions->push_back(store);
}

// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS key...]
// KEYS needs the empty key argument; with a real key there it is a syntax error (no keys).
void MigrateKeys(absl::Span<const std::string_view> argv, KeyPositions* positions) {
  size_t first = 3;
  size_t num = 1;
  for (size_t i = 6; i < argv.size(); ++i) {
    if (IsOption(argv[i], "keys")) {
      if (!argv[3].empty()) return;
      first = i + 1;
      num = argv.size() - first;
      break;
    }
    if (IsOption(argv[i], "auth")) {
      i += 1;  // skip the password, which may well be "keys"
    } else if (IsOption(argv[i], "auth2")) {
      i += 2;
    }
  }
  for (size_t i = 0; i < num; ++i) positions->push_back(static_cast<uint32_t>(first + i));
}

// GEORADIUS key ... [STORE key] [STOREDIST key]: the last of them wins.
void GeoradiusKeys(absl::Span<const std::string_view> argv, KeyPositions* positions) {
  positions->push_back(1);
  size_t stored = 0;
  for (size_t i = 5; i < argv.size(); ++i) {
    if ((IsOption(argv[i], "store") || IsOption(argv[i], "storedist")) && i + 1 < argv.size()) {
      stored = ++i;
    }
  }
  if (stored != 0) positions->push_back(static_cast<uint32_t>(stored));
}

// XREAD[GROUP] [BLOCK ms] [COUNT n] [GROUP g c] [NOACK] STREAMS key... id...
void XreadKeys(absl::Span<const std::string_view> argv, KeyPositions* positions) {
  size_t streams = 0;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (IsOption(argv[i], "block") || IsOption(argv[i], "count")) {
      i += 1;
    } else if (IsOption(argv[i], "group")) {
      i += 2;
    } else if (!IsOption(argv[i], "noack")) {
      if (IsOption(argv[i], "streams")) streams = i;
      break;
    }
  }
  const size_t args = streams == 0 ? 0 : argv.size() - streams - 1;
  if (args == 0 || args % 2 != 0) return;  // syntax error: no keys
  for (size_t i = streams + 1; i < streams + 1 + args / 2; ++i) {
    positions->push_back(static_cast<uint32_t>(i));
  }
}

void KeysFromProc(GetKeysProc proc, absl::Span<const std::string_view> argv,
                  KeyPositions* positions) {
  switch (proc) {
    case GetKeysProc::kNone:
      return;
    case GetKeysProc::kFirstArg:
      positions->push_back(1);
      return;
    case GetKeysProc::kNumkeysAt1:
      return NumkeysKeys(0, 1, 2, argv, positions);
    case GetKeysProc::kNumkeysAt2:
      return NumkeysKeys(0, 2, 3, argv, positions);
    case GetKeysProc::kDestThenNumkeys:
      return NumkeysKeys(1, 2, 3, argv, positions);
    case GetKeysProc::kSort:
      return SortKeys(argv, positions);
    case GetKeysProc::kSortRo:
      positions->push_back(1);
      return;
    case GetKeysProc::kMigrate:
      return MigrateKeys(argv, positions);
    case GetKeysProc::kGeoradius:
      return GeoradiusKeys(argv, positions);
    case GetKeysProc::kXread:
      return XreadKeys(argv, positions);
  }
}

}  // namespace

const CommandInfo* LookupCommand(std::string_view name) {
  if (name.empty() || name.size() > kIndex.max_name_length) return nullptr;
  for (size_t slot = CaseFoldHash(name);; slot = (slot + 1) & kIndexMask) {
    const uint16_t entry = kIndex.slots[slot];
    if (entry == 0) return nullptr;
    const CommandInfo& cmd = kCommands[entry - 1];
    if (EqualsFolded(cmd.name, name)) return &cmd;
  }
}

const CommandInfo* LookupSubcommand(const CommandInfo& parent, std::string_view name) {
  const absl::Span<const CommandInfo> subs = parent.subs();
  const auto it = std::lower_bound(subs.begin(), subs.end(), name,
                                   [](const CommandInfo& sub, std::string_view query) {
                                     return CompareFolded(sub.name, query) < 0;
                                   });
  return it != subs.end() && EqualsFolded(it->name, name) ? &*it : nullptr;
}

absl::Span<const CommandInfo> AllCommands() { return kCommands; }

std::string_view CommandTableRedisVersion() { return kCommandTableRedisVersion; }

absl::StatusOr<const CommandInfo*> ResolveCommand(absl::Span<const std::string_view> argv) {
  if (argv.empty()) return absl::InvalidArgumentError("ERR empty command");
  const CommandInfo* cmd = LookupCommand(argv[0]);
  if (cmd == nullptr) return absl::NotFoundError(UnknownCommandMessage(argv));
  if (cmd->subcommand_count > 0 && argv.size() > 1) {
    cmd = LookupSubcommand(*cmd, argv[1]);
    if (cmd == nullptr) return absl::NotFoundError(UnknownSubcommandMessage(argv));
  }
  if (!ArityOk(*cmd, argv.size())) return absl::InvalidArgumentError(ArityMessage(*cmd));
  return cmd;
}

absl::Status GetKeyPositions(const CommandInfo& cmd, absl::Span<const std::string_view> argv,
                             KeyPositions* positions, bool include_not_keys) {
  positions->clear();
  if (!ArityOk(cmd, argv.size())) return absl::InvalidArgumentError(ArityMessage(cmd));
  bool key_spec = false;      // a spec for real keys
  bool channel_spec = false;  // a spec for shard channels (kKeyNotKey)
  bool varflags = false;      // specs whose flags Redis distrusts: it asks the procedure
  for (const KeySpec& spec : cmd.specs()) {
    const bool not_key = (spec.flags & kKeyNotKey) != 0;
    key_spec |= !not_key;
    channel_spec |= not_key;
    varflags |= (spec.flags & kKeyVariableFlags) != 0;
  }
  const bool has_keys = key_spec || cmd.getkeys != GetKeysProc::kNone;  // doesCommandHaveKeys
  const bool want_channels = include_not_keys && channel_spec;
  if (!has_keys && !want_channels) return absl::OkStatus();
  const bool use_specs = (key_spec || want_channels) && !varflags;
  if (!use_specs || !KeysFromSpecs(cmd, argv, include_not_keys, positions)) {
    positions->clear();
    KeysFromProc(cmd.getkeys, argv, positions);
  }
  // Keys are mandatory unless the command says otherwise; shard channels never are.
  if (positions->empty() && has_keys && !cmd.has(kCmdNoMandatoryKeys)) {
    return absl::InvalidArgumentError("ERR Invalid arguments specified for command");
  }
  return absl::OkStatus();
}

}  // namespace slotpilot::protocol
