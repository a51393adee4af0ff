// Logging through spdlog. Hot error paths (a node down, a client sending garbage) use
// SLOTPILOT_LOG_RATE_LIMITED: each call site logs at most kBurst lines per second and then one
// summary of how many it suppressed, so a failing node cannot flood the log or slow the loop.
#ifndef SLOTPILOT_PROXY_LOGGING_H_
#define SLOTPILOT_PROXY_LOGGING_H_

#include <atomic>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace slotpilot::proxy {

class LogRateLimiter {
 public:
  static constexpr int kBurst = 10;
  // True when this call may log; *suppressed receives how many calls were dropped since the last
  // allowed one. Thread-safe (call sites are shared by workers).
  bool Allow(uint64_t* suppressed);

 private:
  std::atomic<int64_t> window_start_ms_{0};
  std::atomic<int> in_window_{0};
  std::atomic<uint64_t> suppressed_{0};
};

// Parses "trace|debug|info|warn|error|critical|off" and applies it to the default logger.
absl::Status SetLogLevel(std::string_view level);
// Logs to stderr with a compact pattern; called once at start-up.
void InitLogging(std::string_view level);

}  // namespace slotpilot::proxy

#define SLOTPILOT_LOG_RATE_LIMITED(lvl, ...)                                          \
  do {                                                                                  \
    static ::slotpilot::proxy::LogRateLimiter slotpilot_log_limiter_;                   \
    uint64_t slotpilot_suppressed_ = 0;                                                 \
    if (spdlog::should_log(spdlog::level::lvl) &&                                    \
        slotpilot_log_limiter_.Allow(&slotpilot_suppressed_)) {                         \
      if (slotpilot_suppressed_ > 0) {                                                  \
        spdlog::lvl("({} similar messages suppressed)", slotpilot_suppressed_);       \
      }                                                                                 \
      spdlog::lvl(__VA_ARGS__);                                                       \
    }                                                                                   \
  } while (0)

#endif  // SLOTPILOT_PROXY_LOGGING_H_
