#include "proxy/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace slotpilot::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Action = ParsedCommandLine::Action;

// Every option of the spec; the table must define exactly these.
const std::vector<std::string> kAllOptions = {
    "seeds",
    "listen",
    "admin-listen",
    "admin-max-body-bytes",
    "admin-max-headers",
    "threads",
    "config",
    "log-level",
    "max-clients",
    "max-pending-per-client",
    "client-max-input-bytes",
    "client-max-output-bytes",
    "idle-timeout",
    "partial-request-timeout",
    "proto-max-bulk-len",
    "max-args",
    "max-inline-bytes",
    "request-timeout",
    "max-redirects",
    "retry-backoff-min",
    "script-cache-max-bytes",
    "retry-backoff-max",
    "connect-timeout",
    "reconnect-backoff-min",
    "reconnect-backoff-max",
    "upstream-max-pending",
    "topology-refresh-interval",
    "topology-min-refresh-interval",
    "shutdown-grace",
    "upstream-user",
    "upstream-password-file",
    "client-password-file",
    "admin-token-file",
    "allow-admin-commands",
    "loop-policy",
    "loop-hold-timeout",
    "loop-hold-max-requests",
    "watcher",
    "stall-timeout",
    "sidecar-id",
    "throttle",
    "throttle-rate",
    "throttle-fraction",
    "throttle-max-delay",
    "throttle-burst",
    "throttle-exempt-reads",
};
const std::vector<std::string> kSecretNames = {"upstream-password", "client-password",
                                               "admin-token"};

EnvLookup FakeEnv(std::map<std::string, std::string> vars = {}) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

absl::StatusOr<ParsedCommandLine> Parse(std::vector<std::string> args,
                                        const EnvLookup& env = FakeEnv()) {
  std::vector<const char*> argv = {"slotpilot"};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data(), env);
}

// Parses with a seed given first, so the result can run; expects success.
Config ParseOk(std::vector<std::string> args, const EnvLookup& env = FakeEnv()) {
  args.insert(args.begin(), "--seeds=127.0.0.1:7000");
  absl::StatusOr<ParsedCommandLine> parsed = Parse(args, env);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return Config{};
  EXPECT_EQ(parsed->action, Action::kRun);
  return parsed->config;
}

// The error message of parsing `args` after a seed; "" when parsing succeeds.
std::string ErrorOf(std::vector<std::string> args, const EnvLookup& env = FakeEnv()) {
  args.insert(args.begin(), "--seeds=127.0.0.1:7000");
  absl::StatusOr<ParsedCommandLine> parsed = Parse(args, env);
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(absl::StrContains(parsed.status().message(), "\n"));
  return std::string(parsed.status().message());
}

std::map<std::string, std::string> EffectiveMap(const Config& config) {
  std::map<std::string, std::string> values;
  for (auto& [name, value] : EffectiveConfig(config)) values[name] = value;
  return values;
}

// A file under the test's temp dir, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    static int counter = 0;
    path_ = absl::StrCat(::testing::TempDir(), "config_test_", getpid(), "_", counter++);
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    EXPECT_NE(file, nullptr) << path_;
    std::fwrite(contents.data(), 1, contents.size(), file);
    std::fclose(file);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// Defaults and the option set.

TEST(ConfigDefaults, StructHoldsTheDocumentedDefaults) {
  const Config c;
  EXPECT_THAT(c.seeds, IsEmpty());
  EXPECT_EQ(c.listen, (Endpoint{"127.0.0.1", 6379}));
  EXPECT_EQ(c.admin_listen, (Endpoint{"127.0.0.1", 9121}));
  EXPECT_EQ(c.threads, 1);
  EXPECT_EQ(c.config_file, "");
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.max_clients, 10000);
  EXPECT_EQ(c.max_pending_per_client, 1024);
  EXPECT_EQ(c.client_max_input_bytes, uint64_t{1} << 30);
  EXPECT_EQ(c.client_max_output_bytes, uint64_t{512} << 20);
  EXPECT_EQ(c.script_cache_max_bytes, uint64_t{64} << 20);
  EXPECT_EQ(c.idle_timeout, absl::ZeroDuration());
  EXPECT_EQ(c.partial_request_timeout, absl::Seconds(30));
  EXPECT_EQ(c.proto_max_bulk_len, uint64_t{512} << 20);
  EXPECT_EQ(c.max_args, 1048576);
  EXPECT_EQ(c.max_inline_bytes, uint64_t{64} << 10);
  EXPECT_EQ(c.request_timeout, absl::Seconds(5));
  EXPECT_EQ(c.max_redirects, 5);
  EXPECT_EQ(c.retry_backoff_min, absl::Milliseconds(10));
  EXPECT_EQ(c.retry_backoff_max, absl::Milliseconds(500));
  EXPECT_EQ(c.connect_timeout, absl::Seconds(1));
  EXPECT_EQ(c.reconnect_backoff_min, absl::Milliseconds(100));
  EXPECT_EQ(c.reconnect_backoff_max, absl::Seconds(5));
  EXPECT_EQ(c.upstream_max_pending, 65536);
  EXPECT_EQ(c.topology_refresh_interval, absl::Seconds(10));
  EXPECT_EQ(c.topology_min_refresh_interval, absl::Seconds(1));
  EXPECT_EQ(c.shutdown_grace, absl::Seconds(10));
  EXPECT_EQ(c.upstream_user, "");
  EXPECT_EQ(c.upstream_password_file, "");
  EXPECT_EQ(c.client_password_file, "");
  EXPECT_EQ(c.admin_token_file, "");
  EXPECT_FALSE(c.allow_admin_commands);
  EXPECT_EQ(c.loop_policy, LoopPolicy::kError);
  EXPECT_EQ(c.loop_hold_timeout, absl::Seconds(2));
  EXPECT_EQ(c.watcher, WatcherMode::kObserve);
  EXPECT_EQ(c.stall_timeout, absl::Seconds(60));
  EXPECT_EQ(c.throttle, ThrottleMode::kNode);
  EXPECT_EQ(c.throttle_rate, 0);
  EXPECT_EQ(c.throttle_fraction, 0.5);
  EXPECT_EQ(c.throttle_max_delay, absl::Milliseconds(500));
  EXPECT_EQ(c.throttle_burst, absl::Milliseconds(100));
  EXPECT_FALSE(c.throttle_exempt_reads);
  EXPECT_EQ(c.upstream_password, "");
  EXPECT_EQ(c.client_password, "");
  EXPECT_EQ(c.admin_token, "");
}

TEST(ConfigDefaults, ParsingOnlySeedsGivesTheDefaults) {
  Config expected;
  expected.seeds = {{"127.0.0.1", 7000}};
  EXPECT_EQ(EffectiveMap(ParseOk({})), EffectiveMap(expected));
}

TEST(ConfigDefaults, RenderInTheSyntaxOfTheSpec) {
  const auto v = EffectiveMap(Config{});
  EXPECT_EQ(v.at("seeds"), "");
  EXPECT_EQ(v.at("listen"), "127.0.0.1:6379");
  EXPECT_EQ(v.at("admin-listen"), "127.0.0.1:9121");
  EXPECT_EQ(v.at("log-level"), "info");
  EXPECT_EQ(v.at("client-max-input-bytes"), "1gb");
  EXPECT_EQ(v.at("client-max-output-bytes"), "512mb");
  EXPECT_EQ(v.at("script-cache-max-bytes"), "64mb");
  EXPECT_EQ(v.at("proto-max-bulk-len"), "512mb");
  EXPECT_EQ(v.at("max-inline-bytes"), "64kb");
  EXPECT_EQ(v.at("idle-timeout"), "0");
  EXPECT_EQ(v.at("partial-request-timeout"), "30s");
  EXPECT_EQ(v.at("retry-backoff-min"), "10ms");
  EXPECT_EQ(v.at("stall-timeout"), "1m");
  EXPECT_EQ(v.at("throttle-fraction"), "0.5");
  EXPECT_EQ(v.at("throttle"), "node");
  EXPECT_EQ(v.at("watcher"), "observe");
  EXPECT_EQ(v.at("loop-policy"), "error");
  EXPECT_EQ(v.at("allow-admin-commands"), "false");
}

TEST(ConfigOptions, TableDefinesExactlyTheSpecifiedOptions) {
  std::vector<std::string> names;
  for (const auto& [name, value] : EffectiveConfig(Config{})) names.push_back(name);
  std::vector<std::string> expected = kAllOptions;
  expected.insert(expected.end(), kSecretNames.begin(), kSecretNames.end());
  std::sort(names.begin(), names.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
}

// ---------------------------------------------------------------------------------------------
// Command-line syntax.

TEST(ConfigCommandLine, ActionsAreReturnedNotPerformed) {
  EXPECT_EQ(Parse({"--help"})->action, Action::kHelp);
  EXPECT_EQ(Parse({"-h"})->action, Action::kHelp);
  EXPECT_EQ(Parse({"--version"})->action, Action::kVersion);
  EXPECT_EQ(Parse({"--print-config-reference"})->action, Action::kPrintReference);
  // An action wins over anything else on the line, even a bad flag or a missing seed.
  EXPECT_EQ(Parse({"--threads=abc", "--help"})->action, Action::kHelp);
}

TEST(ConfigCommandLine, CheckConfigParsesEverythingElse) {
  absl::StatusOr<ParsedCommandLine> ok =
      Parse({"--check-config", "--seeds=127.0.0.1:7000", "--threads=3"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->action, Action::kCheckConfig);
  EXPECT_EQ(ok->config.threads, 3);
  // Unlike the other actions it reports what a run would.
  EXPECT_EQ(Parse({"--check-config", "--threads=abc"}).status().message(),
            "invalid --threads=abc: expected a positive integer");
  EXPECT_FALSE(Parse({"--check-config"}).ok());  // no seeds
}

TEST(ConfigCommandLine, HealthcheckTakesAnAdminAddress) {
  absl::StatusOr<ParsedCommandLine> parsed = Parse({"--healthcheck=127.0.0.1:9121"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->action, Action::kHealthcheck);
  EXPECT_EQ(parsed->healthcheck, (Endpoint{"127.0.0.1", 9121}));
  EXPECT_EQ(Parse({"--healthcheck=nope"}).status().message(),
            "invalid --healthcheck=nope: expected HOST:PORT");
  EXPECT_EQ(ErrorOf({"--healthcheck"}), "--healthcheck needs =VALUE");
}

TEST(ConfigCommandLine, EmptyArgvIsAMissingSeed) {
  absl::StatusOr<ParsedCommandLine> parsed = ParseCommandLine(0, nullptr, FakeEnv());
  EXPECT_EQ(parsed.status().message(),
            "no seeds: pass --seeds=HOST:PORT[,HOST:PORT...] or set seeds in the config file");
}

TEST(ConfigCommandLine, SeedsAreRequiredToRun) {
  EXPECT_EQ(Parse({"--listen=127.0.0.1:7000"}).status().message(),
            "no seeds: pass --seeds=HOST:PORT[,HOST:PORT...] or set seeds in the config file");
}

TEST(ConfigCommandLine, EqualsAndSeparateValueForms) {
  EXPECT_EQ(ParseOk({"--threads=4"}).threads, 4);
  EXPECT_EQ(ParseOk({"--threads", "4"}).threads, 4);
  EXPECT_EQ(ParseOk({"--listen", "[::1]:7001"}).listen, (Endpoint{"::1", 7001}));
  EXPECT_EQ(ParseOk({"--upstream-user="}).upstream_user, "");
  EXPECT_EQ(ParseOk({"--upstream-user", "proxy"}).upstream_user, "proxy");
  const Config c = ParseOk({"--log-level", "debug", "--admin-listen=0.0.0.0:9000"});
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_EQ(c.admin_listen, (Endpoint{"0.0.0.0", 9000}));
}

TEST(ConfigCommandLine, BoolFlagAloneMeansTrue) {
  EXPECT_TRUE(ParseOk({"--allow-admin-commands"}).allow_admin_commands);
  EXPECT_FALSE(ParseOk({"--allow-admin-commands=false"}).allow_admin_commands);
  EXPECT_EQ(ErrorOf({"--allow-admin-commands", "false"}),
            "unexpected argument 'false': options take the form --name=value");
}

TEST(ConfigCommandLine, LaterFlagWins) {
  EXPECT_EQ(ParseOk({"--threads=2", "--threads=3"}).threads, 3);
}

TEST(ConfigCommandLine, MissingValue) {
  EXPECT_EQ(ErrorOf({"--threads"}), "missing value for --threads");
  EXPECT_EQ(ErrorOf({"--listen", "--threads=2"}), "missing value for --listen");
}

TEST(ConfigCommandLine, UnknownFlagsAndArguments) {
  EXPECT_EQ(ErrorOf({"--tread=2"}), "unknown flag --tread; see --help");
  EXPECT_EQ(ErrorOf({"--admin_listen=127.0.0.1:1"}),
            "unknown flag --admin_listen (did you mean --admin-listen?)");
  EXPECT_EQ(ErrorOf({"-t", "2"}), "unexpected argument '-t': options take the form --name=value");
  EXPECT_EQ(ErrorOf({"run"}), "unexpected argument 'run': options take the form --name=value");
  EXPECT_EQ(ErrorOf({"--version=2"}), "--version takes no value");
}

TEST(ConfigCommandLine, SecretsAreRejectedWithAPointerToFileAndEnv) {
  EXPECT_EQ(ErrorOf({"--upstream-password=hunter2"}),
            "--upstream-password is not accepted: secrets never go on the command line; use "
            "--upstream-password-file=FILE or SLOTPILOT_UPSTREAM_PASSWORD");
  EXPECT_EQ(ErrorOf({"--client-password", "x"}),
            "--client-password is not accepted: secrets never go on the command line; use "
            "--client-password-file=FILE or SLOTPILOT_CLIENT_PASSWORD");
  EXPECT_EQ(ErrorOf({"--admin-token=x"}),
            "--admin-token is not accepted: secrets never go on the command line; use "
            "--admin-token-file=FILE");
}

// ---------------------------------------------------------------------------------------------
// Value types.

TEST(ConfigInt, ValidValues) {
  EXPECT_EQ(ParseOk({"--threads=1"}).threads, 1);
  EXPECT_EQ(ParseOk({"--threads=64"}).threads, 64);
  EXPECT_EQ(ParseOk({"--max-redirects=16"}).max_redirects, 16);
  EXPECT_EQ(ParseOk({"--throttle-rate=0"}).throttle_rate, 0);
  EXPECT_EQ(ParseOk({"--max-args=2147483647"}).max_args, 2147483647);
}

TEST(ConfigInt, InvalidValues) {
  EXPECT_EQ(ErrorOf({"--threads=abc"}), "invalid --threads=abc: expected a positive integer");
  EXPECT_EQ(ErrorOf({"--threads="}), "invalid --threads=: expected a positive integer");
  EXPECT_EQ(ErrorOf({"--threads=4x"}), "invalid --threads=4x: expected a positive integer");
  EXPECT_EQ(ErrorOf({"--threads=+4"}), "invalid --threads=+4: expected a positive integer");
  EXPECT_EQ(ErrorOf({"--threads= 4"}), "invalid --threads= 4: expected a positive integer");
  EXPECT_EQ(ErrorOf({"--threads=0"}), "invalid --threads=0: must be between 1 and 64");
  EXPECT_EQ(ErrorOf({"--threads=65"}), "invalid --threads=65: must be between 1 and 64");
  EXPECT_EQ(ErrorOf({"--threads=-1"}), "invalid --threads=-1: must be between 1 and 64");
  EXPECT_EQ(ErrorOf({"--threads=99999999999999999999"}),
            "invalid --threads=99999999999999999999: must be between 1 and 64");
  EXPECT_EQ(ErrorOf({"--max-redirects=17"}),
            "invalid --max-redirects=17: must be between 1 and 16");
  EXPECT_EQ(ErrorOf({"--throttle-rate=x"}),
            "invalid --throttle-rate=x: expected a non-negative integer");
  EXPECT_EQ(ErrorOf({"--max-args=2147483648"}),
            "invalid --max-args=2147483648: must be between 1 and 2147483647");
}

TEST(ConfigDouble, ValidAndInvalidValues) {
  EXPECT_EQ(ParseOk({"--throttle-fraction=0"}).throttle_fraction, 0);
  EXPECT_EQ(ParseOk({"--throttle-fraction=1"}).throttle_fraction, 1);
  EXPECT_EQ(ParseOk({"--throttle-fraction=0.25"}).throttle_fraction, 0.25);
  EXPECT_EQ(ParseOk({"--throttle-fraction=.75"}).throttle_fraction, 0.75);
  EXPECT_EQ(ErrorOf({"--throttle-fraction=1.5"}),
            "invalid --throttle-fraction=1.5: must be between 0 and 1");
  EXPECT_EQ(ErrorOf({"--throttle-fraction=-0.1"}),
            "invalid --throttle-fraction=-0.1: must be between 0 and 1");
  EXPECT_EQ(ErrorOf({"--throttle-fraction=half"}),
            "invalid --throttle-fraction=half: expected a number");
  EXPECT_EQ(ErrorOf({"--throttle-fraction=nan"}),
            "invalid --throttle-fraction=nan: expected a number");
  EXPECT_EQ(ErrorOf({"--throttle-fraction=inf"}),
            "invalid --throttle-fraction=inf: expected a number");
}

TEST(ConfigBool, ValidAndInvalidValues) {
  for (const char* yes : {"true", "yes", "1", "TRUE", "Yes"}) {
    EXPECT_TRUE(ParseOk({absl::StrCat("--throttle-exempt-reads=", yes)}).throttle_exempt_reads)
        << yes;
  }
  for (const char* no : {"false", "no", "0", "False", "NO"}) {
    EXPECT_FALSE(ParseOk({absl::StrCat("--allow-admin-commands=", no)}).allow_admin_commands) << no;
  }
  EXPECT_EQ(ErrorOf({"--allow-admin-commands=maybe"}),
            "invalid --allow-admin-commands=maybe: expected true/false, yes/no or 1/0");
  EXPECT_EQ(ErrorOf({"--allow-admin-commands="}),
            "invalid --allow-admin-commands=: expected true/false, yes/no or 1/0");
}

TEST(ConfigSize, ValidValuesAreBinaryMultiples) {
  auto size = [](const std::string& text) {
    return ParseOk({"--client-max-output-bytes=" + text}).client_max_output_bytes;
  };
  EXPECT_EQ(size("1024"), 1024u);
  EXPECT_EQ(size("1b"), 1u);
  EXPECT_EQ(size("64k"), 64u << 10);
  EXPECT_EQ(size("64kb"), 64u << 10);
  EXPECT_EQ(size("64KiB"), 64u << 10);
  EXPECT_EQ(size("64mb"), 64u << 20);
  EXPECT_EQ(size("512MiB"), 512u << 20);
  EXPECT_EQ(size("64M"), 64u << 20);
  EXPECT_EQ(size("1gb"), uint64_t{1} << 30);
  EXPECT_EQ(size("3G"), uint64_t{3} << 30);
  EXPECT_EQ(size("2tb"), uint64_t{2} << 40);
}

TEST(ConfigSize, InvalidValues) {
  const std::string expected = ": expected a size such as 1024, 64k, 64mb or 512MiB";
  for (const char* bad : {"", "mb", "64xb", "1.5mb", "-1", "64 mb", " 64mb", "64mbs"}) {
    EXPECT_EQ(ErrorOf({absl::StrCat("--proto-max-bulk-len=", bad)}),
              absl::StrCat("invalid --proto-max-bulk-len=", bad, expected));
  }
  EXPECT_EQ(ErrorOf({"--max-inline-bytes=0"}),
            "invalid --max-inline-bytes=0: must be greater than 0");
  EXPECT_EQ(ErrorOf({"--max-inline-bytes=0kb"}),
            "invalid --max-inline-bytes=0kb: must be greater than 0");
  EXPECT_EQ(ErrorOf({"--max-inline-bytes=16777216tb"}),
            "invalid --max-inline-bytes=16777216tb: too large");
  EXPECT_EQ(ErrorOf({"--max-inline-bytes=99999999999999999999"}),
            "invalid --max-inline-bytes=99999999999999999999: too large");
}

TEST(ConfigDuration, ValidValues) {
  auto duration = [](const std::string& text) {
    return ParseOk({"--request-timeout=" + text}).request_timeout;
  };
  EXPECT_EQ(duration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(duration("2s"), absl::Seconds(2));
  EXPECT_EQ(duration("1m"), absl::Minutes(1));
  EXPECT_EQ(duration("1h"), absl::Hours(1));
  EXPECT_EQ(duration("250"), absl::Milliseconds(250));  // bare number = milliseconds
  EXPECT_EQ(duration("3S"), absl::Seconds(3));
  EXPECT_EQ(ParseOk({"--idle-timeout=0"}).idle_timeout, absl::ZeroDuration());
  EXPECT_EQ(ParseOk({"--idle-timeout=0s"}).idle_timeout, absl::ZeroDuration());
  EXPECT_EQ(ParseOk({"--idle-timeout=300s"}).idle_timeout, absl::Minutes(5));
}

TEST(ConfigDuration, InvalidValues) {
  const std::string expected = ": expected a duration such as 500ms, 2s, 1m or 1h";
  for (const char* bad : {"", "s", "1.5s", "5d", "-1s", "1h30m", "2 s", "10us"}) {
    EXPECT_EQ(ErrorOf({absl::StrCat("--connect-timeout=", bad)}),
              absl::StrCat("invalid --connect-timeout=", bad, expected));
  }
  EXPECT_EQ(ErrorOf({"--request-timeout=0"}),
            "invalid --request-timeout=0: must be greater than 0");
  EXPECT_EQ(ErrorOf({"--request-timeout=0ms"}),
            "invalid --request-timeout=0ms: must be greater than 0");
  EXPECT_EQ(ErrorOf({"--request-timeout=9999999999999999h"}),
            "invalid --request-timeout=9999999999999999h: too large");
}

TEST(ConfigEndpoint, ValidValues) {
  EXPECT_EQ(ParseOk({"--listen=10.1.2.3:7000"}).listen, (Endpoint{"10.1.2.3", 7000}));
  EXPECT_EQ(ParseOk({"--listen=redis-0.redis.svc:6379"}).listen,
            (Endpoint{"redis-0.redis.svc", 6379}));
  EXPECT_EQ(ParseOk({"--listen=localhost:1"}).listen, (Endpoint{"localhost", 1}));
  EXPECT_EQ(ParseOk({"--listen=[::1]:65535"}).listen, (Endpoint{"::1", 65535}));
  EXPECT_EQ(ParseOk({"--listen=[2001:db8::7]:6379"}).listen, (Endpoint{"2001:db8::7", 6379}));
}

TEST(ConfigEndpoint, InvalidValues) {
  const std::map<std::string, std::string> cases = {
      {"localhost", "expected HOST:PORT"},
      {"", "expected HOST:PORT"},
      {"host:", "expected HOST:PORT"},
      {":6379", "empty host"},
      {"host:0", "port must be 1-65535"},
      {"host:65536", "port must be 1-65535"},
      {"host:http", "port must be 1-65535"},
      {"host:+80", "port must be 1-65535"},
      {"::1:6379", "IPv6 addresses need brackets: [::1]:6379"},
      {"[::g]:6379", "invalid IPv6 address"},
      {"[::1:6379", "invalid IPv6 address"},
      {"[]:6379", "invalid IPv6 address"},
      {"999.1.1.1:6379", "invalid IPv4 address"},
      {"10.0.0:6379", "invalid IPv4 address"},
      {"my host:6379", "invalid host name"},
      {"a/b:6379", "invalid host name"},
  };
  for (const auto& [text, reason] : cases) {
    EXPECT_EQ(ErrorOf({"--admin-listen=" + text}),
              absl::StrCat("invalid --admin-listen=", text, ": ", reason));
  }
}

TEST(ConfigEndpoint, ToStringBracketsIpv6) {
  EXPECT_EQ((Endpoint{"127.0.0.1", 6379}).ToString(), "127.0.0.1:6379");
  EXPECT_EQ((Endpoint{"redis-0", 7000}).ToString(), "redis-0:7000");
  EXPECT_EQ((Endpoint{"::1", 6379}).ToString(), "[::1]:6379");
}

TEST(ConfigEndpointList, ValidValues) {
  absl::StatusOr<ParsedCommandLine> parsed =
      Parse({"--seeds=10.0.0.1:7000, redis-1:7001,[::1]:7002"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->config.seeds, ElementsAre(Endpoint{"10.0.0.1", 7000},
                                                Endpoint{"redis-1", 7001}, Endpoint{"::1", 7002}));
  EXPECT_EQ(EffectiveMap(parsed->config).at("seeds"), "10.0.0.1:7000,redis-1:7001,[::1]:7002");
}

TEST(ConfigEndpointList, InvalidValues) {
  EXPECT_EQ(Parse({"--seeds=a:1,,b:2"}).status().message(),
            "invalid --seeds=a:1,,b:2: empty entry in the list");
  EXPECT_EQ(Parse({"--seeds=a:1,"}).status().message(),
            "invalid --seeds=a:1,: empty entry in the list");
  EXPECT_EQ(Parse({"--seeds=a:1,b"}).status().message(),
            "invalid --seeds=a:1,b: b: expected HOST:PORT");
  EXPECT_EQ(Parse({"--seeds=a:1,b:99999"}).status().message(),
            "invalid --seeds=a:1,b:99999: b:99999: port must be 1-65535");
  // An empty list is a valid value, but the proxy cannot run without a seed.
  EXPECT_EQ(Parse({"--seeds="}).status().message(),
            "no seeds: pass --seeds=HOST:PORT[,HOST:PORT...] or set seeds in the config file");
}

TEST(ConfigEnum, ValidValues) {
  const std::map<std::string, LogLevel> levels = {
      {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},   {"error", LogLevel::kError}, {"critical", LogLevel::kCritical},
      {"off", LogLevel::kOff},     {"WARN", LogLevel::kWarn},
  };
  for (const auto& [word, level] : levels) {
    EXPECT_EQ(ParseOk({"--log-level=" + word}).log_level, level) << word;
  }
  EXPECT_EQ(ParseOk({"--loop-policy=hold"}).loop_policy, LoopPolicy::kHold);
  EXPECT_EQ(ParseOk({"--watcher=off"}).watcher, WatcherMode::kOff);
  EXPECT_EQ(ParseOk({"--watcher=finish"}).watcher, WatcherMode::kFinish);
  EXPECT_EQ(ParseOk({"--throttle=slot"}).throttle, ThrottleMode::kSlot);
  EXPECT_EQ(ParseOk({"--throttle=off"}).throttle, ThrottleMode::kOff);
}

TEST(ConfigEnum, InvalidValues) {
  EXPECT_EQ(ErrorOf({"--log-level=verbose"}),
            "invalid --log-level=verbose: expected one of "
            "trace|debug|info|warn|error|critical|off");
  EXPECT_EQ(ErrorOf({"--loop-policy=retry"}),
            "invalid --loop-policy=retry: expected one of error|hold");
  EXPECT_EQ(ErrorOf({"--watcher="}), "invalid --watcher=: expected one of off|observe|finish");
  EXPECT_EQ(ErrorOf({"--throttle=cluster"}),
            "invalid --throttle=cluster: expected one of off|node|slot");
}

TEST(ConfigCrossChecks, MinMustNotExceedMax) {
  EXPECT_EQ(ErrorOf({"--retry-backoff-min=600ms"}),
            "retry-backoff-min=600ms exceeds retry-backoff-max=500ms");
  EXPECT_EQ(ErrorOf({"--reconnect-backoff-max=50"}),
            "reconnect-backoff-min=100ms exceeds reconnect-backoff-max=50ms");
  EXPECT_EQ(ErrorOf({"--topology-refresh-interval=500ms"}),
            "topology-min-refresh-interval=1s exceeds topology-refresh-interval=500ms");
  EXPECT_EQ(ErrorOf({"--retry-backoff-min=1s", "--retry-backoff-max=1s"}), "");
}

// ---------------------------------------------------------------------------------------------
// YAML file.

TEST(ConfigYaml, FileSetsOptionsAndFlagsWin) {
  TempFile file(
      "seeds: [10.0.0.1:7000, 10.0.0.2:7000]\n"
      "admin_listen: 127.0.0.1:9200\n"
      "threads: 4\n"
      "log_level: debug\n"
      "request_timeout: 2s\n"
      "client_max_output_bytes: 32mb\n"
      "allow_admin_commands: yes\n"
      "watcher: off\n"
      "throttle_fraction: 0.25\n"
      "listen: \"[::1]:6380\"\n");
  absl::StatusOr<ParsedCommandLine> parsed =
      Parse({"--config", file.path(), "--threads=8", "--log-level=warn"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Config& c = parsed->config;
  EXPECT_EQ(c.config_file, file.path());
  EXPECT_THAT(c.seeds, ElementsAre(Endpoint{"10.0.0.1", 7000}, Endpoint{"10.0.0.2", 7000}));
  EXPECT_EQ(c.admin_listen, (Endpoint{"127.0.0.1", 9200}));
  EXPECT_EQ(c.threads, 8);                  // flag wins
  EXPECT_EQ(c.log_level, LogLevel::kWarn);  // flag wins, even given before
  EXPECT_EQ(c.request_timeout, absl::Seconds(2));
  EXPECT_EQ(c.client_max_output_bytes, uint64_t{32} << 20);
  EXPECT_TRUE(c.allow_admin_commands);
  EXPECT_EQ(c.watcher, WatcherMode::kOff);
  EXPECT_EQ(c.throttle_fraction, 0.25);
  EXPECT_EQ(c.listen, (Endpoint{"::1", 6380}));
  EXPECT_EQ(c.max_clients, 10000);  // untouched default
}

TEST(ConfigYaml, SeedsAsCommaSeparatedString) {
  TempFile file("seeds: \"a:1,b:2\"\n");
  absl::StatusOr<ParsedCommandLine> parsed = Parse({"--config=" + file.path()});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->config.seeds, ElementsAre(Endpoint{"a", 1}, Endpoint{"b", 2}));
}

TEST(ConfigYaml, FlagSeedsReplaceFileSeeds) {
  TempFile file("seeds: [a:1, b:2]\n");
  absl::StatusOr<ParsedCommandLine> parsed = Parse({"--config=" + file.path(), "--seeds=c:3"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->config.seeds, ElementsAre(Endpoint{"c", 3}));
}

TEST(ConfigYaml, EmptyFileAndCommentsOnlyAreFine) {
  TempFile empty("");
  TempFile comments("# nothing here\n");
  EXPECT_EQ(ErrorOf({"--config=" + empty.path()}), "");
  EXPECT_EQ(ErrorOf({"--config=" + comments.path()}), "");
}

TEST(ConfigYaml, UnknownKeys) {
  TempFile typo("threads: 2\ntread: 4\n");
  EXPECT_EQ(ErrorOf({"--config=" + typo.path()}),
            absl::StrCat("config file ", typo.path(), ": unknown key 'tread'"));
  TempFile dashed("admin-listen: 127.0.0.1:1\n");
  EXPECT_EQ(ErrorOf({"--config=" + dashed.path()}),
            absl::StrCat("config file ", dashed.path(),
                         ": unknown key 'admin-listen' (did you mean 'admin_listen'?)"));
  TempFile config_key("config: /other.yaml\n");
  EXPECT_EQ(ErrorOf({"--config=" + config_key.path()}),
            absl::StrCat("config file ", config_key.path(),
                         ": key 'config' is accepted on the command line only"));
}

TEST(ConfigYaml, SecretKeysAreRejected) {
  TempFile file("upstream_password: hunter2\n");
  EXPECT_EQ(ErrorOf({"--config=" + file.path()}),
            absl::StrCat("config file ", file.path(),
                         ": key 'upstream_password' is not accepted: secrets never go in the "
                         "config file; use --upstream-password-file=FILE or "
                         "SLOTPILOT_UPSTREAM_PASSWORD"));
}

TEST(ConfigYaml, InvalidValues) {
  TempFile bad_int("threads: abc\n");
  EXPECT_EQ(ErrorOf({"--config=" + bad_int.path()}),
            absl::StrCat("config file ", bad_int.path(),
                         ": invalid 'threads: abc': expected a positive integer"));
  TempFile bad_seed("seeds: [a:1, b]\n");
  EXPECT_EQ(Parse({"--config=" + bad_seed.path()}).status().message(),
            absl::StrCat("config file ", bad_seed.path(),
                         ": invalid 'seeds: a:1,b': b: expected HOST:PORT"));
  TempFile list_for_scalar("threads: [1, 2]\n");
  EXPECT_EQ(ErrorOf({"--config=" + list_for_scalar.path()}),
            absl::StrCat("config file ", list_for_scalar.path(),
                         ": invalid 'threads': expected a single value"));
  TempFile nested_list("seeds: [[a:1]]\n");
  EXPECT_EQ(Parse({"--config=" + nested_list.path()}).status().message(),
            absl::StrCat("config file ", nested_list.path(),
                         ": invalid 'seeds': expected a list of single values"));
  TempFile null_value("threads:\n");
  EXPECT_EQ(ErrorOf({"--config=" + null_value.path()}),
            absl::StrCat("config file ", null_value.path(),
                         ": invalid 'threads: ': expected a positive integer"));
}

TEST(ConfigYaml, FlagOverridesABadFileValueOnlyIfTheFileIsValid) {
  // The file is checked as a whole: a bad value there is an error even if a flag would win.
  TempFile file("threads: abc\n");
  EXPECT_EQ(ErrorOf({"--config=" + file.path(), "--threads=2"}),
            absl::StrCat("config file ", file.path(),
                         ": invalid 'threads: abc': expected a positive integer"));
}

TEST(ConfigYaml, StructuralErrors) {
  TempFile duplicate("threads: 2\nthreads: 3\n");
  EXPECT_EQ(ErrorOf({"--config=" + duplicate.path()}),
            absl::StrCat("config file ", duplicate.path(), ": key 'threads' appears twice"));
  TempFile not_a_map("- threads\n");
  EXPECT_EQ(ErrorOf({"--config=" + not_a_map.path()}),
            absl::StrCat("config file ", not_a_map.path(),
                         ": expected a mapping of option keys to values"));
  TempFile syntax("threads: 2\nlisten: [::1]:6379\n");
  EXPECT_EQ(
      ErrorOf({"--config=" + syntax.path()}),
      absl::StrCat("config file ", syntax.path(), ": line 2, column 14: end of map not found"));
}

TEST(ConfigYaml, MissingFileIsNamed) {
  const std::string path = ::testing::TempDir() + "does-not-exist.yaml";
  EXPECT_EQ(ErrorOf({"--config=" + path}),
            absl::StrCat("config file ", path, ": No such file or directory"));
}

TEST(ConfigYaml, DirectoryIsNamed) {
  const std::string path = ::testing::TempDir();
  EXPECT_EQ(ErrorOf({"--config=" + path}), absl::StrCat("config file ", path, ": Is a directory"));
}

TEST(ConfigYaml, BadFlagIsReportedBeforeTheFileIsRead) {
  EXPECT_EQ(ErrorOf({"--config=/nonexistent.yaml", "--threads=abc"}),
            "invalid --threads=abc: expected a positive integer");
}

// ---------------------------------------------------------------------------------------------
// Secrets.

TEST(ConfigSecrets, UnsetByDefault) {
  const Config c = ParseOk({});
  EXPECT_EQ(c.upstream_password, "");
  EXPECT_EQ(c.client_password, "");
  EXPECT_EQ(c.admin_token, "");
}

TEST(ConfigSecrets, FromFilesFirstLineWithoutLineEnd) {
  TempFile upstream("s3cret\nsecond line ignored\n");
  TempFile client("client pass \r\n");
  TempFile token("tok");
  const Config c = ParseOk({"--upstream-password-file=" + upstream.path(), "--client-password-file",
                            client.path(), "--admin-token-file=" + token.path()});
  EXPECT_EQ(c.upstream_password, "s3cret");
  EXPECT_EQ(c.client_password, "client pass ");
  EXPECT_EQ(c.admin_token, "tok");
}

TEST(ConfigSecrets, FileOptionsFromYaml) {
  TempFile token("from-yaml\n");
  TempFile config(absl::StrCat("seeds: a:1\nadmin_token_file: ", token.path(), "\n"));
  absl::StatusOr<ParsedCommandLine> parsed = Parse({"--config=" + config.path()});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.admin_token, "from-yaml");
}

TEST(ConfigSecrets, FromEnvironment) {
  const Config c = ParseOk(
      {}, FakeEnv({{"SLOTPILOT_UPSTREAM_PASSWORD", "up"}, {"SLOTPILOT_CLIENT_PASSWORD", "cl"}}));
  EXPECT_EQ(c.upstream_password, "up");
  EXPECT_EQ(c.client_password, "cl");
  EXPECT_EQ(c.admin_token, "");
}

TEST(ConfigSecrets, EmptyEnvironmentValueCountsAsUnset) {
  TempFile upstream("from-file\n");
  const Config c = ParseOk({"--upstream-password-file=" + upstream.path()},
                           FakeEnv({{"SLOTPILOT_UPSTREAM_PASSWORD", ""}}));
  EXPECT_EQ(c.upstream_password, "from-file");
}

TEST(ConfigSecrets, FileAndEnvironmentTogetherAreAnError) {
  TempFile upstream("from-file\n");
  EXPECT_EQ(ErrorOf({"--upstream-password-file=" + upstream.path()},
                    FakeEnv({{"SLOTPILOT_UPSTREAM_PASSWORD", "from-env"}})),
            "upstream-password is given twice, by --upstream-password-file and by "
            "SLOTPILOT_UPSTREAM_PASSWORD; use one");
}

TEST(ConfigSecrets, UnreadableOrEmptyFileIsNamed) {
  const std::string missing = ::testing::TempDir() + "no-such-secret";
  EXPECT_EQ(
      ErrorOf({"--client-password-file=" + missing}),
      absl::StrCat("cannot read --client-password-file=", missing, ": No such file or directory"));
  TempFile empty("");
  EXPECT_EQ(
      ErrorOf({"--admin-token-file=" + empty.path()}),
      absl::StrCat("cannot read --admin-token-file=", empty.path(), ": the first line is empty"));
  TempFile blank_first_line("\npassword-on-line-two\n");
  EXPECT_EQ(ErrorOf({"--upstream-password-file=" + blank_first_line.path()}),
            absl::StrCat("cannot read --upstream-password-file=", blank_first_line.path(),
                         ": the first line is empty"));
  TempFile huge(std::string(100 << 10, 'x'));
  EXPECT_EQ(ErrorOf({"--upstream-password-file=" + huge.path()}),
            absl::StrCat("cannot read --upstream-password-file=", huge.path(),
                         ": larger than 65536 bytes"));
}

// ---------------------------------------------------------------------------------------------
// Documentation and run-time views.

TEST(ConfigHelp, ListsEveryOptionGroupAndSecretSource) {
  const std::string help = HelpText();
  for (const std::string& name : kAllOptions) {
    EXPECT_TRUE(absl::StrContains(help, "\n  --" + name + "=") ||
                absl::StrContains(help, "\n  --" + name + "[=BOOL]"))
        << name;
  }
  for (const char* group : {"Process", "Network", "Limits", "Routing", "Upstream", "Security",
                            "Loop detection", "Watcher", "Throttle"}) {
    EXPECT_TRUE(absl::StrContains(help, absl::StrCat("\n", group, ":\n"))) << group;
  }
  for (const char* text : {"-h, --help", "--version", "--print-config-reference",
                           "SLOTPILOT_UPSTREAM_PASSWORD", "SLOTPILOT_CLIENT_PASSWORD",
                           "(default: 512mb; reloadable)", "--threads=N  (default: 1)\n"}) {
    EXPECT_TRUE(absl::StrContains(help, text)) << text;
  }
  for (absl::string_view line : absl::StrSplit(help, '\n')) {
    EXPECT_LE(line.size(), 100u) << line;
  }
}

TEST(ConfigReference, OneRowPerOption) {
  const std::string markdown = ConfigReferenceMarkdown();
  int rows = 0;
  int headers = 0;
  for (absl::string_view line : absl::StrSplit(markdown, '\n')) {
    if (absl::StartsWith(line, "| `--")) ++rows;
    if (absl::StartsWith(line, "| Flag | YAML key | Type | Default | Reloadable | Description |"))
      ++headers;
  }
  EXPECT_EQ(rows, static_cast<int>(kAllOptions.size()));
  EXPECT_EQ(headers, 9);
  for (const std::string& name : kAllOptions) {
    EXPECT_TRUE(absl::StrContains(markdown, "| `--" + name + "` |")) << name;
  }
  EXPECT_TRUE(absl::StrContains(
      markdown, "| `--threads` | `threads` | int 1..64 | `1` | no | Worker threads;"));
  EXPECT_TRUE(absl::StrContains(markdown,
                                "| `--log-level` | `log_level` | "
                                "trace\\|debug\\|info\\|warn\\|error\\|critical\\|off "
                                "| `info` | yes |"));
  EXPECT_TRUE(absl::StrContains(markdown, "| `--config` | (command line only) | path | (none) |"));
  EXPECT_TRUE(absl::StrContains(markdown,
                                "| `--admin-listen` | `admin_listen` | endpoint | "
                                "`127.0.0.1:9121` | no |"));
  EXPECT_EQ(markdown, ConfigReferenceMarkdown());  // deterministic
}

TEST(ConfigEffective, RedactsSecrets) {
  Config c;
  auto values = EffectiveMap(c);
  EXPECT_EQ(values.at("upstream-password"), "<unset>");
  EXPECT_EQ(values.at("client-password"), "<unset>");
  EXPECT_EQ(values.at("admin-token"), "<unset>");
  c.upstream_password = "hunter2";
  c.admin_token = "tok3n";
  values = EffectiveMap(c);
  EXPECT_EQ(values.at("upstream-password"), "<redacted>");
  EXPECT_EQ(values.at("client-password"), "<unset>");
  EXPECT_EQ(values.at("admin-token"), "<redacted>");
  for (const auto& [name, value] : EffectiveConfig(c)) {
    EXPECT_FALSE(absl::StrContains(value, "hunter2")) << name;
    EXPECT_FALSE(absl::StrContains(value, "tok3n")) << name;
  }
}

TEST(ConfigEffective, ValuesParseBackAsFlags) {
  const Config original = ParseOk(
      {"--listen=[::1]:7001", "--threads=3", "--client-max-input-bytes=1536kb",
       "--idle-timeout=90s", "--request-timeout=1500", "--log-level=trace", "--watcher=finish",
       "--throttle-fraction=0.125", "--allow-admin-commands", "--upstream-user=proxy"});
  std::vector<std::string> flags;
  for (const auto& [name, value] : EffectiveConfig(original)) {
    if (name == "config" || name.ends_with("-password") || name == "admin-token") continue;
    flags.push_back(absl::StrCat("--", name, "=", value));
  }
  absl::StatusOr<ParsedCommandLine> reparsed = Parse(flags);
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_EQ(EffectiveConfig(reparsed->config), EffectiveConfig(original));
  EXPECT_EQ(EffectiveMap(original).at("client-max-input-bytes"), "1536kb");
  EXPECT_EQ(EffectiveMap(original).at("idle-timeout"), "90s");
  EXPECT_EQ(EffectiveMap(original).at("request-timeout"), "1500ms");
}

TEST(ConfigDiff, OnlyNonReloadableChangesAreListed) {
  const Config old_config;
  EXPECT_THAT(DiffNonReloadable(old_config, old_config), IsEmpty());

  Config reloadable_only = old_config;
  reloadable_only.log_level = LogLevel::kDebug;
  reloadable_only.max_clients = 5;
  reloadable_only.request_timeout = absl::Seconds(1);
  reloadable_only.throttle_fraction = 0.1;
  reloadable_only.allow_admin_commands = true;
  EXPECT_THAT(DiffNonReloadable(old_config, reloadable_only), IsEmpty());

  Config needs_restart = reloadable_only;
  needs_restart.listen.port = 6380;
  needs_restart.threads = 2;
  needs_restart.seeds = {{"a", 1}};
  needs_restart.connect_timeout = absl::Seconds(3);
  needs_restart.client_password = "new";
  EXPECT_THAT(DiffNonReloadable(old_config, needs_restart),
              ElementsAre("threads", "seeds", "listen", "connect-timeout", "client-password"));
}

TEST(ConfigDiff, MergeReloadableTakesOnlyReloadableOptions) {
  Config running;
  running.seeds = {{"a", 1}};
  Config loaded = running;
  loaded.log_level = LogLevel::kDebug;
  loaded.max_clients = 7;
  loaded.watcher = WatcherMode::kFinish;
  loaded.listen.port = 7001;
  loaded.threads = 4;
  loaded.upstream_password = "new";
  const Config merged = MergeReloadable(running, loaded);
  EXPECT_EQ(merged.log_level, LogLevel::kDebug);
  EXPECT_EQ(merged.max_clients, 7);
  EXPECT_EQ(merged.watcher, WatcherMode::kFinish);
  EXPECT_EQ(merged.listen, running.listen);
  EXPECT_EQ(merged.threads, running.threads);
  EXPECT_EQ(merged.upstream_password, "");
  EXPECT_THAT(DiffNonReloadable(running, merged), IsEmpty());
}

TEST(ConfigDiff, ReparsingAChangedFileReportsRestartOptions) {
  TempFile v1("seeds: [a:1]\nlog_level: info\nlisten: 127.0.0.1:7000\n");
  TempFile v2("seeds: [a:1]\nlog_level: debug\nlisten: 127.0.0.1:7001\n");
  absl::StatusOr<ParsedCommandLine> first = Parse({"--config=" + v1.path()});
  absl::StatusOr<ParsedCommandLine> second = Parse({"--config=" + v2.path()});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  // The path differs too, but --config comes from the same argv on a real SIGHUP.
  Config now = second->config;
  now.config_file = first->config.config_file;
  EXPECT_THAT(DiffNonReloadable(first->config, now), ElementsAre("listen"));
  EXPECT_EQ(now.log_level, LogLevel::kDebug);
}

}  // namespace
}  // namespace slotpilot::proxy
