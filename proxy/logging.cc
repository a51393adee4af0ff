#include "proxy/logging.h"

#include <chrono>
#include <string>

#include "protocol/strings.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace slotpilot::proxy {

bool LogRateLimiter::Allow(uint64_t* suppressed) {
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t start = window_start_ms_.load(std::memory_order_relaxed);
  if (now - start >= 1000 &&
      window_start_ms_.compare_exchange_strong(start, now, std::memory_order_relaxed)) {
    in_window_.store(0, std::memory_order_relaxed);
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < kBurst) {
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

absl::Status SetLogLevel(std::string_view level) {
  spdlog::level::level_enum parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(StrCat("unknown log level '", level, "'"));
  }
  spdlog::set_level(parsed);
  return absl::OkStatus();
}

void InitLogging(std::string_view level) {
  auto logger = spdlog::stderr_color_mt("slotpilot");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%L%$ [%t] %v");
  (void)SetLogLevel(level);
}

}  // namespace slotpilot::proxy
