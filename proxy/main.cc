// slotpilot: a Redis Cluster sidecar proxy. See README.md.
#include <cstdio>
#include <string>

#include "proxy/admin_server.h"
#include "proxy/config.h"
#include "proxy/logging.h"
#include "proxy/proxy.h"
#include "proxy/version.h"

namespace {

std::string LogLevelName(slotpilot::proxy::LogLevel level) {
  using slotpilot::proxy::LogLevel;
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kCritical: return "critical";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

}  // namespace

int main(int argc, char** argv) {
  using slotpilot::proxy::ParsedCommandLine;
  auto parsed = slotpilot::proxy::ParseCommandLine(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "slotpilot: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  switch (parsed->action) {
    case ParsedCommandLine::Action::kHelp:
      std::fputs(slotpilot::proxy::HelpText().c_str(), stdout);
      return 0;
    case ParsedCommandLine::Action::kVersion:
      std::printf("slotpilot %s\n", std::string(slotpilot::proxy::Version()).c_str());
      return 0;
    case ParsedCommandLine::Action::kPrintReference:
      std::fputs(slotpilot::proxy::ConfigReferenceMarkdown().c_str(), stdout);
      return 0;
    case ParsedCommandLine::Action::kCheckConfig:
      for (const auto& [name, value] : slotpilot::proxy::EffectiveConfig(parsed->config)) {
        std::printf("%s=%s\n", name.c_str(), value.c_str());
      }
      std::fputs("slotpilot: configuration OK\n", stderr);
      return 0;
    case ParsedCommandLine::Action::kHealthcheck: {
      const absl::Status health =
          slotpilot::proxy::ProbeHealthz(parsed->healthcheck.host, parsed->healthcheck.port);
      if (health.ok()) return 0;
      std::fprintf(stderr, "slotpilot: unhealthy: %s\n", std::string(health.message()).c_str());
      return 1;
    }
    case ParsedCommandLine::Action::kRun:
      break;
  }
  std::string level = LogLevelName(parsed->config.log_level);
  slotpilot::proxy::InitLogging(level);
  slotpilot::proxy::ProxyOptions options = slotpilot::proxy::ProxyOptionsFromConfig(parsed->config);
  options.log_level = level;
  options.argv.assign(argv, argv + argc);  // SIGHUP re-parses them
  slotpilot::proxy::Proxy proxy(std::move(options));
  absl::Status status = proxy.Run();
  if (!status.ok()) {
    std::fprintf(stderr, "slotpilot: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
