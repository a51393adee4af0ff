// slotpilot: a Redis Cluster sidecar proxy. See README.md.
#include <cstdio>
#include <string>

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
    case ParsedCommandLine::Action::kRun:
      break;
  }
  std::string level = LogLevelName(parsed->config.log_level);
  slotpilot::proxy::InitLogging(level);
  slotpilot::proxy::ProxyOptions options = slotpilot::proxy::ProxyOptionsFromConfig(parsed->config);
  options.log_level = level;
  slotpilot::proxy::Proxy proxy(std::move(options));
  absl::Status status = proxy.Run();
  if (!status.ok()) {
    std::fprintf(stderr, "slotpilot: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
