// Per-worker metrics. Each worker writes only its own WorkerStats (single writer: relaxed
// load+store, no read-modify-write, no lock); the control thread reads every worker's on scrape
// and sums them (twemproxy's habit: the event loop never waits for the stats reader).
#ifndef SLOTPILOT_PROXY_STATS_H_
#define SLOTPILOT_PROXY_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace slotpilot::proxy {

class Counter {
 public:
  void Add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Add(int64_t n) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void Set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Latency histogram with fixed bucket bounds in microseconds (Prometheus `le` buckets).
class Histogram {
 public:
  static constexpr std::array<uint64_t, 16> kBoundsUs = {
      50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
      100000, 250000, 500000, 1000000, 2500000, 5000000};
  void Observe(uint64_t us);
  // counts()[i] = observations <= kBoundsUs[i] (not cumulative); last = above every bound.
  uint64_t bucket(size_t i) const { return buckets_[i].value(); }
  uint64_t count() const { return count_.value(); }
  uint64_t sum_us() const { return sum_us_.value(); }

 private:
  std::array<Counter, kBoundsUs.size() + 1> buckets_;
  Counter count_;
  Counter sum_us_;
};

// Coarse command classes for request/error counters (bounded label cardinality).
enum class CommandClass : uint16_t { kRead, kWrite, kLocal, kOther, kCount };
std::string_view CommandClassName(CommandClass c);

enum class RetryReason : uint8_t { kTryAgain, kClusterDown, kLoading, kMasterDown, kCount };
std::string_view RetryReasonName(RetryReason r);

struct WorkerStats {
  // Clients.
  Counter client_connections_total;
  Gauge client_connections;
  Counter client_rejected_max_clients;
  Counter client_protocol_errors;
  Counter client_closed_output_limit;
  Counter client_closed_input_limit;
  Counter client_closed_idle;
  // Requests.
  std::array<Counter, static_cast<size_t>(CommandClass::kCount)> requests;
  std::array<Counter, static_cast<size_t>(CommandClass::kCount)> errors;
  Histogram latency;
  Counter request_timeouts;
  Gauge blocked_clients;  // requests waiting in a blocking command
  // Redirects and retries.
  Counter redirects_moved;
  Counter redirects_ask;
  Counter evalsha_as_eval;  // EVALSHA of a body the ScriptCache knows, sent as EVAL
  // Indexed by LoopPattern (kNone unused).
  std::array<Counter, 4> redirect_loops;
  Counter loop_holds;
  Counter loop_hold_releases;
  Counter loop_hold_expiries;
  Gauge loop_held_requests;
  std::array<Counter, static_cast<size_t>(RetryReason::kCount)> retries;
  // Upstreams.
  Counter upstream_connects;
  Counter upstream_connect_failures;
  Counter upstream_disconnects;
  Counter upstream_stalls;
  Gauge upstream_connections;
  Counter upstream_unreachable_fast_fails;
  // Throttling of migration sources (ThrottleGate).
  Counter throttled_requests;   // had to wait for budget
  Counter throttle_rejections;  // waited throttle-max-delay, answered with an error
  Gauge throttle_waiting;
  Histogram throttle_delay;     // time waited by the requests that were then sent
  // Topology.
  Counter topology_installs;
  Counter topology_refresh_requests;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_STATS_H_
