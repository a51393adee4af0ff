// Prometheus text exposition (format 0.0.4) of the proxy's metrics: per-worker counters summed at
// scrape time, plus control-plane gauges. Bounded label cardinality: command classes, redirect
// kinds, loop patterns, the top loop slots and the masters of the topology.
#ifndef SLOTPILOT_PROXY_METRICS_H_
#define SLOTPILOT_PROXY_METRICS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/loop_tracker.h"
#include "proxy/migration_controller.h"
#include "proxy/stats.h"
#include "proxy/throttle.h"
#include "proxy/topology.h"

namespace slotpilot::proxy {

// Plain sums of every worker's WorkerStats.
struct StatsTotals {
  uint64_t client_connections_total = 0;
  int64_t client_connections = 0;
  uint64_t client_rejected_max_clients = 0;
  uint64_t client_protocol_errors = 0;
  uint64_t client_closed_output_limit = 0;
  uint64_t client_closed_input_limit = 0;
  uint64_t client_closed_idle = 0;
  std::array<uint64_t, static_cast<size_t>(CommandClass::kCount)> requests{};
  std::array<uint64_t, static_cast<size_t>(CommandClass::kCount)> errors{};
  std::array<uint64_t, Histogram::kBoundsUs.size() + 1> latency_buckets{};
  uint64_t latency_count = 0;
  uint64_t latency_sum_us = 0;
  uint64_t request_timeouts = 0;
  uint64_t redirects_moved = 0;
  uint64_t redirects_ask = 0;
  uint64_t evalsha_as_eval = 0;
  std::array<uint64_t, static_cast<size_t>(RetryReason::kCount)> retries{};
  std::array<uint64_t, 4> redirect_loops{};
  uint64_t loop_holds = 0;
  uint64_t loop_hold_releases = 0;
  uint64_t loop_hold_expiries = 0;
  int64_t loop_held_requests = 0;
  uint64_t upstream_connects = 0;
  uint64_t upstream_connect_failures = 0;
  uint64_t upstream_disconnects = 0;
  uint64_t upstream_stalls = 0;
  int64_t upstream_connections = 0;
  uint64_t upstream_unreachable_fast_fails = 0;
  uint64_t topology_installs = 0;
  uint64_t topology_refresh_requests = 0;
  uint64_t throttled_requests = 0;
  uint64_t throttle_rejections = 0;
  int64_t throttle_waiting = 0;
  std::array<uint64_t, Histogram::kBoundsUs.size() + 1> throttle_delay_buckets{};
  uint64_t throttle_delay_count = 0;
  uint64_t throttle_delay_sum_us = 0;

  void Add(const WorkerStats& s);
};

// What the control plane knows, for gauges.
struct ControlMetrics {
  uint64_t topology_version = 0;
  uint64_t topology_masters = 0;
  uint64_t topology_slots_assigned = 0;
  uint64_t topology_refreshes = 0;
  uint64_t topology_refresh_failures = 0;
  uint64_t loop_reports_queued = 0;
  uint64_t loop_reports_dropped = 0;
  std::vector<MasterHealth> masters;
  // Gauges of later components, 0 until they exist.
  uint64_t throttled_nodes = 0;
  std::vector<ThrottleNodeReport> throttle_nodes;  // summed over workers, one per node
  WatcherMetrics watcher;
  // SIGHUP reloads, and the options changed in the file that wait for a restart.
  uint64_t config_reloads = 0;
  uint64_t config_reload_failures = 0;
  uint64_t config_restart_required = 0;
};

// Loop slots exposed per slot: the most frequent ones only (bounded cardinality).
inline constexpr size_t kMaxLoopSlotsInMetrics = 20;

std::string RenderPrometheus(const StatsTotals& totals, const ControlMetrics& control,
                             const std::vector<LoopRecord>& loops);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_METRICS_H_
