// Configuration of the slotpilot process. One declarative table of options (config.cc) is the
// single source of truth for: command-line parsing, the optional YAML file, --help, the Markdown
// configuration reference (--print-config-reference, embedded in the ops guide), the effective
// configuration shown by the admin API, and which options a SIGHUP reload may change.
//
// Precedence: built-in defaults < YAML file (--config=FILE) < command-line flags.
// Secrets (upstream password, client password, admin token) are never taken from the command line
// or the YAML file: only from files named by the *-file options or from environment variables.
//
// Threads: everything here is thread-compatible and keeps no mutable global state; it runs on the
// main thread at start-up and on the control thread on SIGHUP. Errors are absl::Status (never
// exceptions), each one line that names the offending flag, key or file.
#ifndef SLOTPILOT_PROXY_CONFIG_H_
#define SLOTPILOT_PROXY_CONFIG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace slotpilot::proxy {

// HOST:PORT. `host` is a hostname, an IPv4 address or an IPv6 address without brackets.
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  // "10.0.0.1:6379", "redis-0.example:7000", "[::1]:6379".
  std::string ToString() const;
  bool operator==(const Endpoint&) const = default;
};

enum class LogLevel : uint8_t { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
// What a request caught in a redirect loop gets: an error naming the slot, or held (bounded by
// loop_hold_timeout) until the watcher publishes the slot as repaired.
enum class LoopPolicy : uint8_t { kError, kHold };
enum class WatcherMode : uint8_t { kOff, kObserve, kFinish };
// Token buckets per source node of a migration, or per migrating slot.
enum class ThrottleMode : uint8_t { kOff, kNode, kSlot };

// The effective configuration. The member initializers are the defaults (--help and the reference
// render them from Config{}). Field meanings are documented once, in the option table in
// config.cc; see --help or ConfigReferenceMarkdown().
struct Config {
  // Process
  std::string config_file;  // --config
  LogLevel log_level = LogLevel::kInfo;
  int threads = 1;
  absl::Duration shutdown_grace = absl::Seconds(10);

  // Network
  std::vector<Endpoint> seeds;
  Endpoint listen{"127.0.0.1", 6379};
  Endpoint admin_listen{"127.0.0.1", 9121};
  uint64_t admin_max_body_bytes = 64 * 1024;
  int admin_max_headers = 64;

  // Limits
  int max_clients = 10000;
  int max_pending_per_client = 1024;
  uint64_t client_max_input_bytes = uint64_t{1} << 30;
  uint64_t client_max_output_bytes = uint64_t{64} << 20;
  absl::Duration idle_timeout = absl::ZeroDuration();  // zero = never
  absl::Duration partial_request_timeout = absl::Seconds(30);
  uint64_t proto_max_bulk_len = uint64_t{512} << 20;
  int max_args = 1048576;
  uint64_t max_inline_bytes = uint64_t{64} << 10;
  uint64_t script_cache_max_bytes = uint64_t{64} << 20;

  // Routing
  absl::Duration request_timeout = absl::Seconds(5);
  int max_redirects = 5;
  absl::Duration retry_backoff_min = absl::Milliseconds(10);
  absl::Duration retry_backoff_max = absl::Milliseconds(500);
  absl::Duration topology_refresh_interval = absl::Seconds(10);
  absl::Duration topology_min_refresh_interval = absl::Seconds(1);

  // Upstream
  absl::Duration connect_timeout = absl::Seconds(1);
  absl::Duration reconnect_backoff_min = absl::Milliseconds(100);
  absl::Duration reconnect_backoff_max = absl::Seconds(5);
  int upstream_max_pending = 65536;
  std::string upstream_user;

  // Security: paths of secret files, and admin command switch.
  std::string upstream_password_file;
  std::string client_password_file;
  std::string admin_token_file;
  bool allow_admin_commands = false;

  // Loop detection
  LoopPolicy loop_policy = LoopPolicy::kError;
  absl::Duration loop_hold_timeout = absl::Seconds(2);
  int loop_hold_max_requests = 10000;

  // Watcher
  WatcherMode watcher = WatcherMode::kObserve;
  absl::Duration stall_timeout = absl::Seconds(60);
  std::string sidecar_id;  // empty: generated at start-up

  // Throttle
  ThrottleMode throttle = ThrottleMode::kNode;
  int throttle_rate = 0;  // ops/s; 0 = use throttle_fraction
  double throttle_fraction = 0.5;
  absl::Duration throttle_max_delay = absl::Milliseconds(500);
  absl::Duration throttle_burst = absl::Milliseconds(100);
  bool throttle_exempt_reads = false;

  // Resolved secrets, filled by ParseCommandLine; empty = not configured (no AUTH upstream,
  // clients need no AUTH, admin POST endpoints disabled).
  std::string upstream_password;
  std::string client_password;
  std::string admin_token;
};

// Environment lookup, injectable for tests. An empty value counts as unset.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup DefaultEnv();  // std::getenv

struct ParsedCommandLine {
  // kCheckConfig: everything kRun does (file, flags, secrets, checks), then exit instead of
  // serving. kHealthcheck: GET /healthz of the admin address given as --healthcheck=HOST:PORT.
  enum class Action : uint8_t {
    kRun, kHelp, kVersion, kPrintReference, kCheckConfig, kHealthcheck
  };
  Action action = Action::kRun;
  // Complete (file read, flags applied, secrets loaded, checked) only for kRun and kCheckConfig;
  // the other actions return defaults without looking at the remaining arguments.
  Config config;
  Endpoint healthcheck;  // kHealthcheck only
};

// Parses `slotpilot --seeds=HOST:PORT[,...] --listen=HOST:PORT ...` (argv[0] is skipped). Both
// `--name=value` and `--name value`; a bool flag alone means true. `-h`/`--help`, `--version` and
// `--print-config-reference` are actions, returned rather than performed. Reads the YAML file
// named by --config, applies flags over it, loads secrets (files, then `env`) and checks that the
// result can run (at least one seed, min <= max pairs). On SIGHUP call it again with the saved
// argv: the file is re-read and flags still win; then see DiffNonReloadable.
// Errors: InvalidArgument with one line, e.g. "invalid --threads=abc: expected a positive
// integer" or "config file /x.yaml: unknown key 'tread'".
absl::StatusOr<ParsedCommandLine> ParseCommandLine(int argc, const char* const* argv,
                                                   const EnvLookup& env = DefaultEnv());

// --help: usage, then every option grouped (Process, Network, Limits, Routing, Upstream, Security,
// Loop detection, Watcher, Throttle) with its value type, default and whether SIGHUP reloads it.
std::string HelpText();

// Markdown reference, one table row per option: flag | YAML key | type | default | reloadable |
// description. Deterministic, so the ops guide can embed it and CI can diff it.
std::string ConfigReferenceMarkdown();

// Every option as {name, value} in table order (name = flag name without "--"; value in the
// syntax the flag accepts, so it parses back), then "upstream-password", "client-password" and
// "admin-token" as "<redacted>" or "<unset>". For GET /v1/config.
std::vector<std::pair<std::string, std::string>> EffectiveConfig(const Config& config);

// Names (as in EffectiveConfig) of the options that differ between `old_config` and `new_config`
// and need a restart to take effect; a changed secret is listed under its own name (e.g.
// "upstream-password"). Empty when everything that changed can be applied at run time.
std::vector<std::string> DiffNonReloadable(const Config& old_config, const Config& new_config);

// `running` with every reloadable option taken from `loaded`: what a SIGHUP applies. Options that
// need a restart (and secrets) keep their running values.
Config MergeReloadable(const Config& running, const Config& loaded);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_CONFIG_H_
