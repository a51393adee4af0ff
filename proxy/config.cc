#include "proxy/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace slotpilot::proxy {
namespace {

// Debian's Abseil keeps its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW is 0), so this
// file works in absl::string_view; std::string_view appears only at the public API.

// A config or secret file is small; a bigger one is a wrong path (a log, a device), refused before
// it is parsed or used as a password.
constexpr size_t kMaxConfigFileBytes = size_t{1} << 20;
constexpr size_t kMaxSecretFileBytes = size_t{64} << 10;
constexpr size_t kHelpWidth = 100;

constexpr std::array<absl::string_view, 7> kLogLevelWords = {"trace", "debug",    "info", "warn",
                                                             "error", "critical", "off"};
constexpr std::array<absl::string_view, 2> kLoopPolicyWords = {"error", "hold"};
constexpr std::array<absl::string_view, 3> kWatcherWords = {"off", "observe", "finish"};
constexpr std::array<absl::string_view, 3> kThrottleWords = {"off", "node", "slot"};
// Word i is enumerator i.
static_assert(kLogLevelWords.size() == static_cast<size_t>(LogLevel::kOff) + 1);
static_assert(kLoopPolicyWords.size() == static_cast<size_t>(LoopPolicy::kHold) + 1);
static_assert(kWatcherWords.size() == static_cast<size_t>(WatcherMode::kFinish) + 1);
static_assert(kThrottleWords.size() == static_cast<size_t>(ThrottleMode::kSlot) + 1);

constexpr absl::string_view kValueSyntax =
    "Durations: 500ms, 2s, 1m, 1h (a bare number is milliseconds). Sizes: 1024, 64k, 64mb, "
    "512MiB, 1gb (binary multiples; a bare number is bytes). Bools: true/false, yes/no, 1/0. "
    "Endpoints: HOST:PORT with an IPv4 address, a host name or a bracketed IPv6 address "
    "([::1]:6379; quote it in YAML). Endpoint lists are comma-separated, or a YAML list.";

template <typename... Args>
absl::Status Invalid(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

// ---------------------------------------------------------------------------------------------
// Value types: each parses the text of a flag or YAML scalar into a typed value, or returns the
// reason it cannot ("expected ..."), which the caller prefixes with the flag or key; and formats
// a value back into text the parser accepts.

bool IsDigits(absl::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); });
}

size_t LeadingDigits(absl::string_view text) {
  size_t n = 0;
  while (n < text.size() && absl::ascii_isdigit(text[n])) ++n;
  return n;
}

absl::StatusOr<int> ParseInt(absl::string_view text, int min, int max) {
  if (!IsDigits(absl::StripPrefix(text, "-"))) {
    return Invalid(min > 0 ? "expected a positive integer" : "expected a non-negative integer");
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return Invalid("must be between ", min, " and ", max);
  }
  return static_cast<int>(value);
}

// Shortest form up to 6 significant digits: 0.5, 0.125, 1.
std::string DoubleText(double value) { return absl::StrFormat("%g", value); }

absl::StatusOr<double> ParseDouble(absl::string_view text, double min, double max) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) return Invalid("expected a number");
  if (value < min || value > max) {
    return Invalid("must be between ", DoubleText(min), " and ", DoubleText(max));
  }
  return value;
}

absl::StatusOr<bool> ParseBool(absl::string_view text) {
  const std::string word = absl::AsciiStrToLower(text);
  if (word == "true" || word == "yes" || word == "1") return true;
  if (word == "false" || word == "no" || word == "0") return false;
  return Invalid("expected true/false, yes/no or 1/0");
}

struct SizeUnit {
  absl::string_view suffix;
  int shift;
};
constexpr SizeUnit kSizeUnits[] = {
    {"", 0},     {"b", 0},  {"k", 10},  {"kb", 10},  {"kib", 10}, {"m", 20},  {"mb", 20},
    {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}, {"t", 40},   {"tb", 40}, {"tib", 40},
};

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  const size_t digits = LeadingDigits(text);
  const std::string suffix = absl::AsciiStrToLower(text.substr(digits));
  const auto unit = std::find_if(std::begin(kSizeUnits), std::end(kSizeUnits),
                                 [&](const SizeUnit& u) { return u.suffix == suffix; });
  if (digits == 0 || unit == std::end(kSizeUnits)) {
    return Invalid("expected a size such as 1024, 64k, 64mb or 512MiB");
  }
  uint64_t count = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &count) ||
      count > (std::numeric_limits<uint64_t>::max() >> unit->shift)) {
    return Invalid("too large");
  }
  if (count == 0) return Invalid("must be greater than 0");
  return count << unit->shift;
}

// Largest unit that divides the value: 1gb, 64mb, 64kb, 1000.
std::string SizeText(uint64_t bytes) {
  static constexpr std::pair<int, absl::string_view> kUnits[] = {
      {40, "tb"}, {30, "gb"}, {20, "mb"}, {10, "kb"}};
  for (const auto& [shift, suffix] : kUnits) {
    const uint64_t mask = (uint64_t{1} << shift) - 1;
    if (bytes != 0 && (bytes & mask) == 0) return absl::StrCat(bytes >> shift, suffix);
  }
  return absl::StrCat(bytes);
}

struct DurationUnit {
  absl::string_view suffix;
  int64_t millis;
};
// Largest first, for DurationText.
constexpr DurationUnit kDurationUnits[] = {
    {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}, {"", 1}};

enum class ZeroIs : uint8_t { kAllowed, kInvalid };

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text, ZeroIs zero) {
  const size_t digits = LeadingDigits(text);
  const std::string suffix = absl::AsciiStrToLower(text.substr(digits));
  const auto unit = std::find_if(std::begin(kDurationUnits), std::end(kDurationUnits),
                                 [&](const DurationUnit& u) { return u.suffix == suffix; });
  if (digits == 0 || unit == std::end(kDurationUnits)) {
    return Invalid("expected a duration such as 500ms, 2s, 1m or 1h");
  }
  int64_t count = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &count) ||
      count > std::numeric_limits<int64_t>::max() / unit->millis) {
    return Invalid("too large");
  }
  if (count == 0 && zero == ZeroIs::kInvalid) return Invalid("must be greater than 0");
  return absl::Milliseconds(count * unit->millis);
}

std::string DurationText(absl::Duration d) {
  if (d == absl::ZeroDuration()) return "0";
  for (const DurationUnit& unit : kDurationUnits) {
    absl::Duration rest;
    const int64_t count = absl::IDivDuration(d, absl::Milliseconds(unit.millis), &rest);
    if (rest == absl::ZeroDuration()) return absl::StrCat(count, unit.suffix);
  }
  return absl::FormatDuration(d);  // below a millisecond: never produced by ParseDuration
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text) {
  int port = 0;
  if (!IsDigits(text) || !absl::SimpleAtoi(text, &port) || port < 1 || port > 65535) {
    return Invalid("port must be 1-65535");
  }
  return static_cast<uint16_t>(port);
}

bool IsHostNameChar(char c) { return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_'; }

// Returns the host without IPv6 brackets.
absl::StatusOr<std::string> ParseHost(absl::string_view host) {
  if (host.empty()) return Invalid("empty host");
  if (absl::ConsumePrefix(&host, "[")) {
    in6_addr addr;
    const std::string inner(absl::StripSuffix(host, "]"));
    if (!absl::EndsWith(host, "]") || inet_pton(AF_INET6, inner.c_str(), &addr) != 1) {
      return Invalid("invalid IPv6 address");
    }
    return inner;
  }
  if (absl::StrContains(host, ':')) return Invalid("IPv6 addresses need brackets: [::1]:6379");
  if (!std::all_of(host.begin(), host.end(), IsHostNameChar)) return Invalid("invalid host name");
  in_addr addr;
  const std::string name(host);
  const bool looks_numeric = std::all_of(name.begin(), name.end(),
                                         [](char c) { return absl::ascii_isdigit(c) || c == '.'; });
  if (looks_numeric && inet_pton(AF_INET, name.c_str(), &addr) != 1) {
    return Invalid("invalid IPv4 address");
  }
  return name;
}

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == text.size()) {
    return Invalid("expected HOST:PORT");
  }
  absl::StatusOr<std::string> host = ParseHost(text.substr(0, colon));
  if (!host.ok()) return host.status();
  absl::StatusOr<uint16_t> port = ParsePort(text.substr(colon + 1));
  if (!port.ok()) return port.status();
  return Endpoint{*std::move(host), *port};
}

absl::StatusOr<std::vector<Endpoint>> ParseEndpointList(absl::string_view text) {
  std::vector<Endpoint> endpoints;
  if (text.empty()) return endpoints;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) return Invalid("empty entry in the list");
    absl::StatusOr<Endpoint> endpoint = ParseEndpoint(entry);
    if (!endpoint.ok()) return Invalid(entry, ": ", endpoint.status().message());
    endpoints.push_back(*std::move(endpoint));
  }
  return endpoints;
}

std::string FormatEndpointList(const std::vector<Endpoint>& endpoints) {
  return absl::StrJoin(endpoints, ",", [](std::string* out, const Endpoint& endpoint) {
    out->append(endpoint.ToString());
  });
}

template <typename E>
absl::StatusOr<E> ParseEnum(absl::string_view text, std::span<const absl::string_view> words) {
  const std::string word = absl::AsciiStrToLower(text);
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i] == word) return static_cast<E>(i);
  }
  return Invalid("expected one of ", absl::StrJoin(words, "|"));
}

// ---------------------------------------------------------------------------------------------
// Bindings: a value type tied to one Config field.

struct Binding {
  std::string type;               // reference "Type" column: "int 1..64", "duration"
  std::string metavar;            // --help: --name=METAVAR
  bool is_list = false;           // a YAML sequence is accepted
  bool alone_means_true = false;  // bool: `--flag` without a value
  std::function<absl::Status(absl::string_view, Config&)> parse;
  std::function<std::string(const Config&)> format;
  std::function<bool(const Config&, const Config&)> same;
  std::function<void(const Config&, Config&)> copy;  // from, to
};

template <typename T, typename Parse, typename Format>
Binding Bind(T Config::*field, std::string type, std::string metavar, Parse parse, Format format) {
  Binding binding;
  binding.type = std::move(type);
  binding.metavar = std::move(metavar);
  binding.parse = [field, parse](absl::string_view text, Config& config) -> absl::Status {
    absl::StatusOr<T> value = parse(text);
    if (!value.ok()) return value.status();
    config.*field = *std::move(value);
    return absl::OkStatus();
  };
  binding.format = [field, format](const Config& config) { return format(config.*field); };
  binding.same = [field](const Config& a, const Config& b) { return a.*field == b.*field; };
  binding.copy = [field](const Config& from, Config& to) { to.*field = from.*field; };
  return binding;
}

Binding IntValue(int Config::*field, int min, int max) {
  return Bind(
      field, absl::StrCat("int ", min, "..", max), "N",
      [min, max](absl::string_view text) { return ParseInt(text, min, max); },
      [](int value) { return absl::StrCat(value); });
}

Binding DoubleValue(double Config::*field, double min, double max) {
  return Bind(
      field, absl::StrCat("number ", DoubleText(min), "..", DoubleText(max)), "X",
      [min, max](absl::string_view text) { return ParseDouble(text, min, max); }, DoubleText);
}

Binding BoolValue(bool Config::*field) {
  Binding binding = Bind(field, "bool", "BOOL", ParseBool,
                         [](bool value) { return std::string(value ? "true" : "false"); });
  binding.alone_means_true = true;
  return binding;
}

Binding SizeValue(uint64_t Config::*field) {
  return Bind(field, "size", "SIZE", ParseSize, SizeText);
}

Binding DurationValue(absl::Duration Config::*field, ZeroIs zero) {
  return Bind(
      field, zero == ZeroIs::kAllowed ? "duration" : "duration > 0", "DURATION",
      [zero](absl::string_view text) { return ParseDuration(text, zero); }, DurationText);
}

Binding StringValue(std::string Config::*field, std::string type, std::string metavar) {
  return Bind(
      field, std::move(type), std::move(metavar),
      [](absl::string_view text) { return absl::StatusOr<std::string>(std::string(text)); },
      [](const std::string& value) { return value; });
}

Binding EndpointValue(Endpoint Config::*field) {
  return Bind(field, "endpoint", "HOST:PORT", ParseEndpoint,
              [](const Endpoint& value) { return value.ToString(); });
}

Binding EndpointListValue(std::vector<Endpoint> Config::*field) {
  Binding binding = Bind(field, "endpoint list", "HOST:PORT[,HOST:PORT...]", ParseEndpointList,
                         FormatEndpointList);
  binding.is_list = true;
  return binding;
}

template <typename E, size_t N>
Binding EnumValue(E Config::*field, const std::array<absl::string_view, N>& words) {
  std::string joined = absl::StrJoin(words, "|");
  return Bind(
      field, joined, joined, [&words](absl::string_view text) { return ParseEnum<E>(text, words); },
      [&words](E value) { return std::string(words[static_cast<size_t>(value)]); });
}

// ---------------------------------------------------------------------------------------------
// The option table: the single definition of every option.

enum class Scope : uint8_t {
  kRestart,      // read at start-up; a change on SIGHUP needs a restart
  kReload,       // re-applied on SIGHUP
  kCommandLine,  // command line only (no YAML key); read at start-up
};
constexpr Scope kRestart = Scope::kRestart;
constexpr Scope kReload = Scope::kReload;

struct Option {
  absl::string_view name;  // flag name without "--"; YAML key = name with '-' -> '_'
  Scope scope;
  Binding binding;
  absl::string_view help;
  absl::string_view group = {};  // filled from kGroups
};

std::vector<Option> ProcessOptions() {
  return {
      {"config", Scope::kCommandLine, StringValue(&Config::config_file, "path", "FILE"),
       "YAML file setting any other option (key = option name with '-' replaced by '_'). Flags "
       "override the file; unknown keys are an error."},
      {"log-level", kReload, EnumValue(&Config::log_level, kLogLevelWords),
       "Minimum severity of log lines."},
      {"threads", kRestart, IntValue(&Config::threads, 1, 64),
       "Worker threads; each owns an event loop, a listener (SO_REUSEPORT), its clients and its "
       "upstream connections."},
      {"shutdown-grace", kRestart, DurationValue(&Config::shutdown_grace, ZeroIs::kAllowed),
       "On SIGTERM/SIGINT stop accepting, let in-flight requests finish for this long, then "
       "close."},
  };
}

std::vector<Option> NetworkOptions() {
  return {
      {"seeds", kRestart, EndpointListValue(&Config::seeds),
       "Cluster nodes the topology is discovered from; any reachable one is enough. At least one "
       "is required."},
      {"listen", kRestart, EndpointValue(&Config::listen), "Address clients connect to (RESP)."},
      {"admin-listen", kRestart, EndpointValue(&Config::admin_listen),
       "Address of the admin HTTP server (health, metrics, config, watcher)."},
      {"admin-max-body-bytes", kRestart, SizeValue(&Config::admin_max_body_bytes),
       "Largest admin request body; a larger one gets 413."},
      {"admin-max-headers", kRestart, IntValue(&Config::admin_max_headers, 8, 1000),
       "Most header lines an admin request may carry; more get 431."},
  };
}

std::vector<Option> LimitOptions() {
  constexpr int kIntMax = std::numeric_limits<int>::max();
  return {
      {"max-clients", kReload, IntValue(&Config::max_clients, 1, 1000000),
       "Client connections open at once; a connection beyond it gets an error and is closed."},
      {"max-pending-per-client", kReload, IntValue(&Config::max_pending_per_client, 1, 1048576),
       "Pipelined requests in flight per client; beyond it the proxy stops reading that client "
       "(TCP backpressure)."},
      {"client-max-input-bytes", kReload, SizeValue(&Config::client_max_input_bytes),
       "Unparsed input buffered for one client; beyond it the client is disconnected (Redis "
       "client-query-buffer-limit)."},
      {"client-max-output-bytes", kReload, SizeValue(&Config::client_max_output_bytes),
       "Replies buffered for a client that does not read them; beyond it the client is "
       "disconnected."},
      {"idle-timeout", kReload, DurationValue(&Config::idle_timeout, ZeroIs::kAllowed),
       "Close a client connection idle this long; 0 = never (Redis timeout)."},
      {"partial-request-timeout", kReload,
       DurationValue(&Config::partial_request_timeout, ZeroIs::kInvalid),
       "Disconnect a client that holds an incomplete request this long (slowloris)."},
      {"proto-max-bulk-len", kReload, SizeValue(&Config::proto_max_bulk_len),
       "Largest bulk string in a request (Redis proto-max-bulk-len)."},
      {"max-args", kReload, IntValue(&Config::max_args, 1, kIntMax),
       "Most arguments in one request."},
      {"max-inline-bytes", kReload, SizeValue(&Config::max_inline_bytes),
       "Longest inline (non-RESP) command line."},
      {"script-cache-max-bytes", kRestart, SizeValue(&Config::script_cache_max_bytes),
       "Lua script bodies remembered from EVAL and SCRIPT LOAD, so an EVALSHA that reaches a "
       "master without the script runs there as EVAL, as on one Redis; oldest forgotten first. "
       "0 = remember none."},
  };
}

std::vector<Option> RoutingOptions() {
  return {
      {"request-timeout", kReload, DurationValue(&Config::request_timeout, ZeroIs::kInvalid),
       "Deadline of every request from arrival to reply, redirects and retries included; then "
       "the client gets an error."},
      {"max-redirects", kReload, IntValue(&Config::max_redirects, 1, 16),
       "MOVED/ASK hops one request may follow; more is handled as a redirect loop."},
      {"retry-backoff-min", kReload, DurationValue(&Config::retry_backoff_min, ZeroIs::kAllowed),
       "First delay before retrying after TRYAGAIN, CLUSTERDOWN, LOADING or MASTERDOWN; doubles "
       "per retry up to retry-backoff-max, within request-timeout."},
      {"retry-backoff-max", kReload, DurationValue(&Config::retry_backoff_max, ZeroIs::kAllowed),
       "Longest delay between such retries."},
      {"topology-refresh-interval", kRestart,
       DurationValue(&Config::topology_refresh_interval, ZeroIs::kInvalid),
       "Period of the background topology refresh, jittered by up to 20% either way."},
      {"topology-min-refresh-interval", kRestart,
       DurationValue(&Config::topology_min_refresh_interval, ZeroIs::kAllowed),
       "Refreshes triggered by events (MOVED, connection errors) are coalesced and never run "
       "more often than this."},
  };
}

std::vector<Option> UpstreamOptions() {
  return {
      {"connect-timeout", kRestart, DurationValue(&Config::connect_timeout, ZeroIs::kInvalid),
       "Timeout of a connection attempt to a cluster node."},
      {"reconnect-backoff-min", kRestart,
       DurationValue(&Config::reconnect_backoff_min, ZeroIs::kAllowed),
       "First delay before reconnecting to a node that is down; doubles per failure up to "
       "reconnect-backoff-max."},
      {"reconnect-backoff-max", kRestart,
       DurationValue(&Config::reconnect_backoff_max, ZeroIs::kInvalid),
       "Longest delay between reconnect attempts."},
      {"upstream-max-pending", kReload, IntValue(&Config::upstream_max_pending, 1, 16777216),
       "Requests in flight on one upstream connection; beyond it requests fail fast."},
      {"upstream-user", kRestart, StringValue(&Config::upstream_user, "string", "USER"),
       "ACL user for the cluster connections; empty = the default user."},
  };
}

std::vector<Option> SecurityOptions() {
  return {
      {"upstream-password-file", kRestart,
       StringValue(&Config::upstream_password_file, "path", "FILE"),
       "File whose first line is the cluster password (or set SLOTPILOT_UPSTREAM_PASSWORD). "
       "Neither = no AUTH upstream."},
      {"client-password-file", kRestart, StringValue(&Config::client_password_file, "path", "FILE"),
       "File whose first line is the password clients must AUTH with (or set "
       "SLOTPILOT_CLIENT_PASSWORD). Neither = clients need no AUTH."},
      {"admin-token-file", kRestart, StringValue(&Config::admin_token_file, "path", "FILE"),
       "File whose first line is the bearer token of the admin POST endpoints; without it they "
       "are disabled."},
      {"allow-admin-commands", kReload, BoolValue(&Config::allow_admin_commands),
       "Let clients send administrative commands through the proxy; off = they get an error."},
  };
}

std::vector<Option> LoopOptions() {
  return {
      {"loop-policy", kReload, EnumValue(&Config::loop_policy, kLoopPolicyWords),
       "A request caught in a redirect loop: error = answered at once with an error naming the "
       "slot and the pattern; hold = held until the watcher reports the slot repaired, then "
       "retried."},
      {"loop-hold-timeout", kReload, DurationValue(&Config::loop_hold_timeout, ZeroIs::kInvalid),
       "Longest a request is held under loop-policy=hold before it gets the error."},
      {"loop-hold-max-requests", kReload, IntValue(&Config::loop_hold_max_requests, 1, 1000000),
       "Requests held at once per worker under loop-policy=hold; beyond it they get the error "
       "at once (bounded memory)."},
  };
}

std::vector<Option> WatcherOptions() {
  return {
      {"watcher", kReload, EnumValue(&Config::watcher, kWatcherWords),
       "Migration watcher: off; observe = detect and report stuck slots; finish = also repair "
       "them, one watcher at a time under a lease."},
      {"stall-timeout", kRestart, DurationValue(&Config::stall_timeout, ZeroIs::kInvalid),
       "A migrating slot whose remaining key count has not moved for this long is stalled."},
      {"sidecar-id", kRestart, StringValue(&Config::sidecar_id, "string", "ID"),
       "This proxy's identity in the watcher's lease (one acts per slot). Empty = "
       "<hostname>-<pid>-<random>; in Kubernetes the pod name is a good choice."},
  };
}

std::vector<Option> ThrottleOptions() {
  constexpr int kIntMax = std::numeric_limits<int>::max();
  return {
      {"throttle", kReload, EnumValue(&Config::throttle, kThrottleWords),
       "Throttle requests to a node a slot is migrating away from: off; node = every request "
       "to the source node counts against its budget; slot = only requests for its migrating "
       "slots do."},
      {"throttle-rate", kReload, IntValue(&Config::throttle_rate, 0, kIntMax),
       "Budget in requests/s; 0 = throttle-fraction of the node's recent rate."},
      {"throttle-fraction", kReload, DoubleValue(&Config::throttle_fraction, 0, 1),
       "Budget as a fraction of the source node's recent request rate, when throttle-rate is 0."},
      {"throttle-max-delay", kReload, DurationValue(&Config::throttle_max_delay, ZeroIs::kAllowed),
       "Longest a throttled request waits (in order) for budget; then it gets an error."},
      {"throttle-burst", kReload, DurationValue(&Config::throttle_burst, ZeroIs::kAllowed),
       "Burst allowance of a throttled node: this much time at its budget rate may be spent at "
       "once (at least one request)."},
      {"throttle-exempt-reads", kReload, BoolValue(&Config::throttle_exempt_reads),
       "Never throttle read-only commands."},
  };
}

struct GroupDef {
  absl::string_view title;
  std::vector<Option> (*options)();
};
constexpr GroupDef kGroups[] = {
    {"Process", ProcessOptions},     {"Network", NetworkOptions},   {"Limits", LimitOptions},
    {"Routing", RoutingOptions},     {"Upstream", UpstreamOptions}, {"Security", SecurityOptions},
    {"Loop detection", LoopOptions}, {"Watcher", WatcherOptions},   {"Throttle", ThrottleOptions},
};

const std::vector<Option>& Options() {
  static const std::vector<Option>* const options = [] {
    auto* all = new std::vector<Option>;
    for (const GroupDef& group : kGroups) {
      for (Option& option : group.options()) {
        option.group = group.title;
        all->push_back(std::move(option));
      }
    }
    return all;
  }();
  return *options;
}

std::string YamlKey(absl::string_view name) { return absl::StrReplaceAll(name, {{"-", "_"}}); }

const Option* FindOption(absl::string_view name) {
  for (const Option& option : Options()) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

// Secrets come from a file option or an environment variable, never from a flag or YAML key.
struct Secret {
  absl::string_view name;  // as rejected on the command line and listed by EffectiveConfig
  absl::string_view file_option;
  absl::string_view env;  // empty = no environment variable
  std::string Config::*file;
  std::string Config::*value;
};
constexpr Secret kSecrets[] = {
    {"upstream-password", "upstream-password-file", "SLOTPILOT_UPSTREAM_PASSWORD",
     &Config::upstream_password_file, &Config::upstream_password},
    {"client-password", "client-password-file", "SLOTPILOT_CLIENT_PASSWORD",
     &Config::client_password_file, &Config::client_password},
    {"admin-token", "admin-token-file", "", &Config::admin_token_file, &Config::admin_token},
};

const Secret* FindSecret(absl::string_view name) {
  for (const Secret& secret : kSecrets) {
    if (secret.name == name) return &secret;
  }
  return nullptr;
}

// "--upstream-password-file=FILE or SLOTPILOT_UPSTREAM_PASSWORD"
std::string SecretSources(const Secret& secret) {
  std::string sources = absl::StrCat("--", secret.file_option, "=FILE");
  if (!secret.env.empty()) absl::StrAppend(&sources, " or ", secret.env);
  return sources;
}

// ---------------------------------------------------------------------------------------------
// Command line.

using Action = ParsedCommandLine::Action;

struct ActionFlag {
  absl::string_view flag;        // with "=VALUE" when the action takes a value
  absl::string_view short_flag;  // empty = none
  Action action;
  absl::string_view help;
};
constexpr ActionFlag kActions[] = {
    {"--help", "-h", Action::kHelp, "Print this help and exit."},
    {"--version", "", Action::kVersion, "Print the version and exit."},
    {"--print-config-reference", "", Action::kPrintReference,
     "Print the configuration reference (Markdown) and exit."},
    {"--check-config", "", Action::kCheckConfig,
     "Load the configuration as for a run (file, flags, secret files), report the first error or "
     "print the effective configuration, and exit (0 = valid)."},
    {"--healthcheck=HOST:PORT", "", Action::kHealthcheck,
     "GET /healthz of a running proxy's admin address; exit 0 if it answers 200 (for container "
     "HEALTHCHECKs without curl)."},
};

// "--healthcheck=HOST:PORT" -> "--healthcheck".
absl::string_view ActionName(const ActionFlag& action) {
  return action.flag.substr(0, action.flag.find('='));
}

struct FoundAction {
  Action action;
  size_t index;             // position in args
  absl::string_view value;  // after '=' for actions that take a value
};

std::optional<FoundAction> FindAction(std::span<const char* const> args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    for (const ActionFlag& action : kActions) {
      const absl::string_view name = ActionName(action);
      absl::string_view value = arg;
      if (name.size() != action.flag.size() && absl::ConsumePrefix(&value, name) &&
          absl::ConsumePrefix(&value, "=")) {
        return FoundAction{action.action, i, value};
      }
      if (arg == action.flag || (!action.short_flag.empty() && arg == action.short_flag)) {
        return FoundAction{action.action, i, {}};
      }
    }
  }
  return std::nullopt;
}

struct FlagValue {
  const Option* option;
  std::string value;
};

absl::StatusOr<const Option*> LookupFlag(absl::string_view name) {
  if (const Option* option = FindOption(name)) return option;
  if (const Secret* secret = FindSecret(name)) {
    return Invalid("--", name, " is not accepted: secrets never go on the command line; use ",
                   SecretSources(*secret));
  }
  for (const ActionFlag& action : kActions) {
    if (action.flag == absl::StrCat("--", name)) return Invalid("--", name, " takes no value");
    if (ActionName(action) == absl::StrCat("--", name)) return Invalid("--", name, " needs =VALUE");
  }
  const std::string dashed = absl::StrReplaceAll(name, {{"_", "-"}});
  if (dashed != name && FindOption(dashed) != nullptr) {
    return Invalid("unknown flag --", name, " (did you mean --", dashed, "?)");
  }
  return Invalid("unknown flag --", name, "; see --help");
}

// Parses `--name=value`, `--name value` and a bare bool `--name`; `i` moves past a consumed value.
absl::StatusOr<FlagValue> ParseFlag(std::span<const char* const> args, size_t& i) {
  absl::string_view arg = args[i];
  if (!absl::ConsumePrefix(&arg, "--")) {
    return Invalid("unexpected argument '", arg, "': options take the form --name=value");
  }
  const size_t equals = arg.find('=');
  absl::StatusOr<const Option*> option = LookupFlag(arg.substr(0, equals));
  if (!option.ok()) return option.status();
  if (equals != absl::string_view::npos)
    return FlagValue{*option, std::string(arg.substr(equals + 1))};
  if ((*option)->binding.alone_means_true) return FlagValue{*option, "true"};
  if (i + 1 >= args.size() || absl::StartsWith(args[i + 1], "--")) {
    return Invalid("missing value for --", (*option)->name);
  }
  ++i;
  return FlagValue{*option, args[i]};
}

absl::StatusOr<std::vector<FlagValue>> ParseFlags(std::span<const char* const> args) {
  std::vector<FlagValue> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::StatusOr<FlagValue> flag = ParseFlag(args, i);
    if (!flag.ok()) return flag.status();
    flags.push_back(*std::move(flag));
  }
  return flags;
}

// Later flags win over earlier ones.
absl::Status ApplyFlags(const std::vector<FlagValue>& flags, Config& config) {
  for (const FlagValue& flag : flags) {
    const absl::Status status = flag.option->binding.parse(flag.value, config);
    if (!status.ok()) {
      return Invalid("invalid --", flag.option->name, "=", flag.value, ": ", status.message());
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Files: the YAML config file and secret files.

// Reads a whole file of at most `max_bytes`. The error is the reason only (strerror text).
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return Invalid(std::strerror(errno));
  std::string data(max_bytes + 1, '\0');
  const size_t size = std::fread(data.data(), 1, data.size(), file);
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) return Invalid(std::strerror(error));
  if (size > max_bytes) return Invalid("larger than ", max_bytes, " bytes");
  data.resize(size);
  return data;
}

absl::StatusOr<const Option*> LookupYamlKey(const std::string& key) {
  const std::string name = absl::StrReplaceAll(key, {{"_", "-"}});
  const Option* option = FindOption(name);
  if (option != nullptr && absl::StrContains(key, '-')) {
    return Invalid("unknown key '", key, "' (did you mean '", YamlKey(name), "'?)");
  }
  if (option != nullptr && option->scope == Scope::kCommandLine) {
    return Invalid("key '", key, "' is accepted on the command line only");
  }
  if (option != nullptr) return option;
  if (const Secret* secret = FindSecret(name)) {
    return Invalid("key '", key, "' is not accepted: secrets never go in the config file; use ",
                   SecretSources(*secret));
  }
  return Invalid("unknown key '", key, "'");
}

// A scalar as written; a sequence (list options only) as its scalars joined by ','.
absl::StatusOr<std::string> YamlValueText(const YAML::Node& value, const Option& option) {
  if (value.IsNull()) return std::string();
  if (value.IsScalar()) return value.Scalar();
  if (!value.IsSequence() || !option.binding.is_list) {
    return Invalid("invalid '", YamlKey(option.name), "': expected a single value");
  }
  std::vector<std::string> items;
  for (const YAML::Node& item : value) {
    if (!item.IsScalar()) {
      return Invalid("invalid '", YamlKey(option.name), "': expected a list of single values");
    }
    items.push_back(item.Scalar());
  }
  return absl::StrJoin(items, ",");
}

absl::Status ApplyYamlEntry(const YAML::Node& key, const YAML::Node& value,
                            std::set<std::string>& seen, Config& config) {
  if (!key.IsScalar()) return Invalid("keys must be option names");
  absl::StatusOr<const Option*> option = LookupYamlKey(key.Scalar());
  if (!option.ok()) return option.status();
  if (!seen.insert(key.Scalar()).second) return Invalid("key '", key.Scalar(), "' appears twice");
  absl::StatusOr<std::string> text = YamlValueText(value, **option);
  if (!text.ok()) return text.status();
  const absl::Status status = (*option)->binding.parse(*text, config);
  if (!status.ok()) {
    return Invalid("invalid '", key.Scalar(), ": ", *text, "': ", status.message());
  }
  return absl::OkStatus();
}

absl::Status ApplyYamlText(const std::string& text, Config& config) {
  try {
    const YAML::Node root = YAML::Load(text);
    if (root.IsNull()) return absl::OkStatus();  // empty file
    if (!root.IsMap()) return Invalid("expected a mapping of option keys to values");
    std::set<std::string> seen;
    for (const auto& entry : root) {
      absl::Status status = ApplyYamlEntry(entry.first, entry.second, seen, config);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return Invalid(e.msg);
    return Invalid("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg);
  }
}

absl::Status ApplyYamlFile(const std::string& path, Config& config) {
  absl::StatusOr<std::string> text = ReadSmallFile(path, kMaxConfigFileBytes);
  absl::Status status = text.ok() ? ApplyYamlText(*text, config) : text.status();
  if (!status.ok()) return Invalid("config file ", path, ": ", status.message());
  return absl::OkStatus();
}

// Defaults, then the YAML file, then the flags. Flags are applied once on their own first, so a
// bad flag is reported before the file is read and --config is known.
absl::StatusOr<Config> BuildConfig(const std::vector<FlagValue>& flags) {
  Config from_flags;
  absl::Status status = ApplyFlags(flags, from_flags);
  if (!status.ok()) return status;
  if (from_flags.config_file.empty()) return from_flags;
  Config config;
  status = ApplyYamlFile(from_flags.config_file, config);
  if (status.ok()) status = ApplyFlags(flags, config);
  if (!status.ok()) return status;
  return config;
}

// First line of the file, without its line end.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  absl::StatusOr<std::string> data = ReadSmallFile(path, kMaxSecretFileBytes);
  if (!data.ok()) return data.status();
  std::string line = data->substr(0, data->find('\n'));
  if (absl::EndsWith(line, "\r")) line.pop_back();
  if (line.empty()) return Invalid("the first line is empty");
  return line;
}

absl::Status LoadSecret(const Secret& secret, const EnvLookup& env, Config& config) {
  const std::string& path = config.*secret.file;
  std::optional<std::string> from_env;
  if (!secret.env.empty()) from_env = env(std::string_view(secret.env.data(), secret.env.size()));
  if (from_env.has_value() && from_env->empty()) from_env.reset();
  if (!path.empty() && from_env.has_value()) {
    return Invalid(secret.name, " is given twice, by --", secret.file_option, " and by ",
                   secret.env, "; use one");
  }
  if (path.empty()) {
    config.*secret.value = from_env.value_or("");
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> value = ReadSecretFile(path);
  if (!value.ok()) {
    return Invalid("cannot read --", secret.file_option, "=", path, ": ", value.status().message());
  }
  config.*secret.value = *std::move(value);
  return absl::OkStatus();
}

absl::Status LoadSecrets(const EnvLookup& env, Config& config) {
  for (const Secret& secret : kSecrets) {
    absl::Status status = LoadSecret(secret, env, config);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

struct DurationOrder {
  absl::string_view low_name;
  absl::string_view high_name;
  absl::Duration Config::*low;
  absl::Duration Config::*high;
};
constexpr DurationOrder kDurationOrders[] = {
    {"retry-backoff-min", "retry-backoff-max", &Config::retry_backoff_min,
     &Config::retry_backoff_max},
    {"reconnect-backoff-min", "reconnect-backoff-max", &Config::reconnect_backoff_min,
     &Config::reconnect_backoff_max},
    {"topology-min-refresh-interval", "topology-refresh-interval",
     &Config::topology_min_refresh_interval, &Config::topology_refresh_interval},
};

// What a single option cannot check: the proxy needs a seed, and min/max pairs must be ordered.
absl::Status CheckRunnable(const Config& config) {
  if (config.seeds.empty()) {
    return Invalid(
        "no seeds: pass --seeds=HOST:PORT[,HOST:PORT...] or set seeds in the config "
        "file");
  }
  for (const DurationOrder& order : kDurationOrders) {
    if (config.*order.low > config.*order.high) {
      return Invalid(order.low_name, "=", DurationText(config.*order.low), " exceeds ",
                     order.high_name, "=", DurationText(config.*order.high));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Documentation.

std::string DefaultText(const Option& option) {
  const std::string text = option.binding.format(Config{});
  return text.empty() ? "none" : text;
}

absl::string_view ScopeNote(Scope scope) {
  switch (scope) {
    case Scope::kReload:
      return "; reloadable";
    case Scope::kRestart:
      return "";
    case Scope::kCommandLine:
      return "; command line only";
  }
  return "";
}

// Word-wraps `text` to kHelpWidth columns, every line indented by `indent` spaces.
std::string Wrap(absl::string_view text, size_t indent) {
  const std::string pad(indent, ' ');
  std::string out;
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent + line.size() + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(&out, pad, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, pad, line, "\n");
  return out;
}

std::string SecretsText() {
  std::string text = "Secrets never go on the command line or in the config file:";
  for (const Secret& secret : kSecrets) {
    absl::StrAppend(&text, " ", secret.name, " from --", secret.file_option, "=FILE (first line)");
    if (!secret.env.empty()) absl::StrAppend(&text, " or the environment variable ", secret.env);
    absl::StrAppend(&text, &secret == &kSecrets[std::size(kSecrets) - 1] ? "." : ";");
  }
  return text;
}

std::string HelpOption(const Option& option) {
  const absl::string_view equals = option.binding.alone_means_true ? "[=" : "=";
  const absl::string_view close = option.binding.alone_means_true ? "]" : "";
  return absl::StrCat("  --", option.name, equals, option.binding.metavar, close,
                      "  (default: ", DefaultText(option), ScopeNote(option.scope), ")\n",
                      Wrap(option.help, 6));
}

std::string MarkdownCell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}});
}

std::string MarkdownRow(const Option& option) {
  const std::string default_text = option.binding.format(Config{});
  return absl::StrCat(
      "| `--", option.name, "` | ",
      option.scope == Scope::kCommandLine ? "(command line only)"
                                          : absl::StrCat("`", YamlKey(option.name), "`"),
      " | ", MarkdownCell(option.binding.type), " | ",
      default_text.empty() ? "(none)" : absl::StrCat("`", default_text, "`"), " | ",
      option.scope == Scope::kReload ? "yes" : "no", " | ", MarkdownCell(option.help), " |\n");
}

}  // namespace

std::string Endpoint::ToString() const {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

EnvLookup DefaultEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<ParsedCommandLine> ParseCommandLine(int argc, const char* const* argv,
                                                   const EnvLookup& env) {
  std::span<const char* const> args(argv + (argc > 0 ? 1 : 0), argc > 0 ? argc - 1 : 0);
  std::vector<const char*> without_check;  // args minus --check-config, which parses the rest
  Action run_action = Action::kRun;
  if (std::optional<FoundAction> found = FindAction(args)) {
    if (found->action == Action::kHealthcheck) {
      absl::StatusOr<Endpoint> endpoint = ParseEndpoint(found->value);
      if (!endpoint.ok()) {
        return Invalid("invalid --healthcheck=", found->value, ": ", endpoint.status().message());
      }
      ParsedCommandLine parsed{Action::kHealthcheck, Config{}, *std::move(endpoint)};
      return parsed;
    }
    if (found->action != Action::kCheckConfig) {
      return ParsedCommandLine{found->action, Config{}, Endpoint{}};
    }
    run_action = Action::kCheckConfig;
    without_check.assign(args.begin(), args.end());
    without_check.erase(without_check.begin() + static_cast<ptrdiff_t>(found->index));
    args = without_check;
  }
  absl::StatusOr<std::vector<FlagValue>> flags = ParseFlags(args);
  if (!flags.ok()) return flags.status();
  absl::StatusOr<Config> config = BuildConfig(*flags);
  if (!config.ok()) return config.status();
  absl::Status status = CheckRunnable(*config);
  if (status.ok()) status = LoadSecrets(env, *config);
  if (!status.ok()) return status;
  return ParsedCommandLine{run_action, *std::move(config), Endpoint{}};
}

std::string HelpText() {
  std::string text =
      "Usage: slotpilot --seeds=HOST:PORT[,HOST:PORT...] [--listen=HOST:PORT]\n"
      "                 [--admin-listen=HOST:PORT] [--threads=N] [--config=FILE]\n"
      "                 [--log-level=LEVEL] [--OPTION=VALUE | --OPTION VALUE]...\n"
      "       slotpilot --help | --version | --print-config-reference\n"
      "       slotpilot --check-config [OPTIONS] | --healthcheck=HOST:PORT\n\n"
      "A Redis Cluster sidecar proxy. Every option below but --config is also a key of the YAML\n"
      "file given by --config (option name with '-' replaced by '_'); flags override the file.\n"
      "Options marked reloadable are re-read on SIGHUP; the others need a restart.\n\n"
      "Actions:\n";
  for (const ActionFlag& action : kActions) {
    const std::string flags = action.short_flag.empty()
                                  ? std::string(action.flag)
                                  : absl::StrCat(action.short_flag, ", ", action.flag);
    absl::StrAppend(&text, "  ", flags, "\n", Wrap(action.help, 6));
  }
  absl::string_view group;
  for (const Option& option : Options()) {
    if (option.group != group) absl::StrAppend(&text, "\n", option.group, ":\n");
    group = option.group;
    absl::StrAppend(&text, HelpOption(option));
  }
  absl::StrAppend(&text, "\n", Wrap(kValueSyntax, 0), "\n", Wrap(SecretsText(), 0));
  return text;
}

std::string ConfigReferenceMarkdown() {
  std::string text =
      "## Configuration reference\n\n"
      "<!-- Generated by `slotpilot --print-config-reference` from proxy/config.cc; "
      "do not edit. -->\n\n"
      "Every option is a command-line flag (`--name=value` or `--name value`) and, except "
      "`--config`, a key of the YAML file given by `--config`: the flag name with `-` replaced "
      "by `_`. Flags override the file; an unknown key is an error. Reloadable options take "
      "effect on SIGHUP; changing any other option needs a restart.\n\n";
  absl::StrAppend(&text, kValueSyntax, "\n\n", SecretsText(), "\n");
  absl::string_view group;
  for (const Option& option : Options()) {
    if (option.group != group) {
      absl::StrAppend(&text, "\n### ", option.group, "\n\n",
                      "| Flag | YAML key | Type | Default | Reloadable | Description |\n",
                      "|---|---|---|---|---|---|\n");
    }
    group = option.group;
    absl::StrAppend(&text, MarkdownRow(option));
  }
  return text;
}

std::vector<std::pair<std::string, std::string>> EffectiveConfig(const Config& config) {
  std::vector<std::pair<std::string, std::string>> values;
  for (const Option& option : Options()) {
    values.emplace_back(std::string(option.name), option.binding.format(config));
  }
  for (const Secret& secret : kSecrets) {
    values.emplace_back(std::string(secret.name),
                        (config.*secret.value).empty() ? "<unset>" : "<redacted>");
  }
  return values;
}

std::vector<std::string> DiffNonReloadable(const Config& old_config, const Config& new_config) {
  std::vector<std::string> changed;
  for (const Option& option : Options()) {
    if (option.scope != Scope::kReload && !option.binding.same(old_config, new_config)) {
      changed.emplace_back(option.name);
    }
  }
  for (const Secret& secret : kSecrets) {
    if (old_config.*secret.value != new_config.*secret.value) changed.emplace_back(secret.name);
  }
  return changed;
}

}  // namespace slotpilot::proxy

namespace slotpilot::proxy {

Config MergeReloadable(const Config& running, const Config& loaded) {
  Config merged = running;
  for (const Option& option : Options()) {
    if (option.scope == Scope::kReload) option.binding.copy(loaded, merged);
  }
  return merged;
}

}  // namespace slotpilot::proxy
