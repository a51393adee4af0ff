#include "proxy/metrics.h"

#include <algorithm>
#include <cstdio>

#include "protocol/strings.h"
#include "proxy/version.h"

namespace slotpilot::proxy {
namespace {

// Writes families with their HELP and TYPE lines once, then samples.
class PromWriter {
 public:
  using Labels = std::vector<std::pair<std::string_view, std::string>>;

  void Family(std::string_view name, std::string_view type, std::string_view help) {
    StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  void Sample(std::string_view name, const Labels& labels, double value) {
    StrAppend(&out_, name);
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        StrAppend(&out_, i ? "," : "", labels[i].first, "=\"", Escape(labels[i].second), "\"");
      }
      out_ += '}';
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %.17g\n", value);
    out_ += buf;
  }
  void Scalar(std::string_view name, std::string_view type, std::string_view help, double value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  static std::string Escape(std::string_view v) {
    std::string out;
    for (char c : v) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out;
  }
  std::string out_;
};

void WriteClients(PromWriter& w, const StatsTotals& t) {
  w.Scalar("slotpilot_client_connections", "gauge", "Client connections open now.",
           static_cast<double>(t.client_connections));
  w.Scalar("slotpilot_client_connections_accepted_total", "counter", "Client connections accepted.",
           static_cast<double>(t.client_connections_total));
  w.Family("slotpilot_client_closed_total", "counter", "Client connections closed by the proxy, by reason.");
  w.Sample("slotpilot_client_closed_total", {{"reason", "max_clients"}}, static_cast<double>(t.client_rejected_max_clients));
  w.Sample("slotpilot_client_closed_total", {{"reason", "protocol_error"}}, static_cast<double>(t.client_protocol_errors));
  w.Sample("slotpilot_client_closed_total", {{"reason", "output_limit"}}, static_cast<double>(t.client_closed_output_limit));
  w.Sample("slotpilot_client_closed_total", {{"reason", "input_limit"}}, static_cast<double>(t.client_closed_input_limit));
  w.Sample("slotpilot_client_closed_total", {{"reason", "idle"}}, static_cast<double>(t.client_closed_idle));
}

void WriteRequests(PromWriter& w, const StatsTotals& t) {
  w.Family("slotpilot_requests_total", "counter", "Client requests, by command class.");
  for (size_t c = 0; c < t.requests.size(); ++c) {
    w.Sample("slotpilot_requests_total", {{"class", std::string(CommandClassName(static_cast<CommandClass>(c)))}},
             static_cast<double>(t.requests[c]));
  }
  w.Family("slotpilot_request_errors_total", "counter", "Requests answered with an error, by command class.");
  for (size_t c = 0; c < t.errors.size(); ++c) {
    w.Sample("slotpilot_request_errors_total", {{"class", std::string(CommandClassName(static_cast<CommandClass>(c)))}},
             static_cast<double>(t.errors[c]));
  }
  w.Family("slotpilot_request_duration_seconds", "histogram", "Time from a request's arrival to its answer.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
    cumulative += t.latency_buckets[i];
    char le[32];
    std::snprintf(le, sizeof(le), "%g", static_cast<double>(Histogram::kBoundsUs[i]) / 1e6);
    w.Sample("slotpilot_request_duration_seconds_bucket", {{"le", le}}, static_cast<double>(cumulative));
  }
  w.Sample("slotpilot_request_duration_seconds_bucket", {{"le", "+Inf"}}, static_cast<double>(t.latency_count));
  w.Sample("slotpilot_request_duration_seconds_sum", {}, static_cast<double>(t.latency_sum_us) / 1e6);
  w.Sample("slotpilot_request_duration_seconds_count", {}, static_cast<double>(t.latency_count));
  w.Scalar("slotpilot_request_timeouts_total", "counter", "Requests answered with a timeout error at their deadline.",
           static_cast<double>(t.request_timeouts));
}

void WriteRedirects(PromWriter& w, const StatsTotals& t, const std::vector<LoopRecord>& loops) {
  w.Family("slotpilot_redirects_total", "counter", "MOVED and ASK redirects followed.");
  w.Sample("slotpilot_redirects_total", {{"kind", "moved"}}, static_cast<double>(t.redirects_moved));
  w.Sample("slotpilot_redirects_total", {{"kind", "ask"}}, static_cast<double>(t.redirects_ask));
  w.Family("slotpilot_evalsha_as_eval_total", "counter",
           "EVALSHA calls sent as EVAL with the body the proxy remembered, so they work on every "
           "master as on one Redis.");
  w.Sample("slotpilot_evalsha_as_eval_total", {}, static_cast<double>(t.evalsha_as_eval));
  w.Family("slotpilot_retries_total", "counter", "Requests retried after a backoff, by the error that caused it.");
  for (size_t r = 0; r < t.retries.size(); ++r) {
    w.Sample("slotpilot_retries_total", {{"reason", std::string(RetryReasonName(static_cast<RetryReason>(r)))}},
             static_cast<double>(t.retries[r]));
  }
  w.Family("slotpilot_redirect_loops_total", "counter", "Requests caught in a redirect loop, by pattern.");
  for (LoopPattern p : {LoopPattern::kAskMoved, LoopPattern::kMovedMoved, LoopPattern::kHopLimit}) {
    w.Sample("slotpilot_redirect_loops_total", {{"pattern", std::string(LoopPatternName(p))}},
             static_cast<double>(t.redirect_loops[static_cast<size_t>(p)]));
  }
  std::vector<LoopRecord> top = loops;
  std::sort(top.begin(), top.end(), [](const LoopRecord& a, const LoopRecord& b) { return a.count > b.count; });
  if (top.size() > kMaxLoopSlotsInMetrics) top.resize(kMaxLoopSlotsInMetrics);
  w.Family("slotpilot_redirect_loop_slot_requests_total", "counter",
           "Looping requests of the most affected slots (at most 20 slots, last hour).");
  for (const LoopRecord& r : top) {
    w.Sample("slotpilot_redirect_loop_slot_requests_total",
             {{"slot", std::to_string(r.slot)}, {"pattern", std::string(LoopPatternName(r.pattern))}},
             static_cast<double>(r.count));
  }
  w.Scalar("slotpilot_loop_held_requests", "gauge", "Requests held now under loop-policy=hold.",
           static_cast<double>(t.loop_held_requests));
  w.Family("slotpilot_loop_hold_total", "counter", "Held requests, by outcome.");
  w.Sample("slotpilot_loop_hold_total", {{"outcome", "held"}}, static_cast<double>(t.loop_holds));
  w.Sample("slotpilot_loop_hold_total", {{"outcome", "released"}}, static_cast<double>(t.loop_hold_releases));
  w.Sample("slotpilot_loop_hold_total", {{"outcome", "expired"}}, static_cast<double>(t.loop_hold_expiries));
}

void WriteUpstreams(PromWriter& w, const StatsTotals& t, const ControlMetrics& c) {
  w.Scalar("slotpilot_upstream_connections", "gauge", "Connections to cluster nodes open now.",
           static_cast<double>(t.upstream_connections));
  w.Scalar("slotpilot_upstream_connects_total", "counter", "Connections to cluster nodes established.",
           static_cast<double>(t.upstream_connects));
  w.Scalar("slotpilot_upstream_connect_failures_total", "counter", "Failed connection attempts to cluster nodes.",
           static_cast<double>(t.upstream_connect_failures));
  w.Scalar("slotpilot_upstream_disconnects_total", "counter", "Established node connections that were lost (reconnects follow).",
           static_cast<double>(t.upstream_disconnects));
  w.Scalar("slotpilot_upstream_stalls_total", "counter",
           "Node connections set aside after no reply for twice the request timeout (new requests use a fresh one).",
           static_cast<double>(t.upstream_stalls));
  w.Scalar("slotpilot_upstream_fast_failures_total", "counter", "Requests failed at once because their node was in reconnect backoff.",
           static_cast<double>(t.upstream_unreachable_fast_fails));
  w.Family("slotpilot_master_reachable", "gauge", "1 if the master answered the control plane's last PING.");
  for (const MasterHealth& m : c.masters) {
    w.Sample("slotpilot_master_reachable", {{"address", m.address}}, m.reachable ? 1 : 0);
  }
}

// Per-slot series are capped: the slots longest stuck / open longest only.
constexpr size_t kMaxSlotSeries = 20;

void WriteWatcher(PromWriter& w, const WatcherMetrics& m) {
  w.Family("slotpilot_watcher_mode", "gauge", "1 for the migration watcher's current mode.");
  for (std::string_view mode : {"off", "observe", "finish"}) {
    w.Sample("slotpilot_watcher_mode", {{"mode", std::string(mode)}}, m.mode == mode || (!m.enabled && mode == "off") ? 1 : 0);
  }
  w.Scalar("slotpilot_watcher_polls_total", "counter", "Cluster polls by the watcher.", static_cast<double>(m.polls));
  w.Scalar("slotpilot_watcher_poll_failures_total", "counter", "Watcher polls that reached no node.",
           static_cast<double>(m.poll_failures));
  w.Scalar("slotpilot_watcher_open_slots", "gauge", "Slots open (MIGRATING/IMPORTING) in some master's view.",
           static_cast<double>(m.open_slots));
  w.Scalar("slotpilot_watcher_stuck_slots", "gauge", "Slots the watcher judges stuck.", static_cast<double>(m.stuck_slots));
  w.Family("slotpilot_watcher_verdicts_total", "counter", "Slots entering each watcher verdict.");
  for (const auto& [verdict, n] : m.verdicts) w.Sample("slotpilot_watcher_verdicts_total", {{"verdict", verdict}}, static_cast<double>(n));
  w.Family("slotpilot_watcher_actions_total", "counter", "Repairs by outcome (started, succeeded, failed, deferred).");
  w.Sample("slotpilot_watcher_actions_total", {{"outcome", "started"}}, static_cast<double>(m.actions_started));
  w.Sample("slotpilot_watcher_actions_total", {{"outcome", "succeeded"}}, static_cast<double>(m.actions_succeeded));
  w.Sample("slotpilot_watcher_actions_total", {{"outcome", "failed"}}, static_cast<double>(m.actions_failed));
  w.Sample("slotpilot_watcher_actions_total", {{"outcome", "deferred"}}, static_cast<double>(m.actions_deferred));
  w.Scalar("slotpilot_watcher_keys_moved_total", "counter", "Keys moved by repairs.", static_cast<double>(m.keys_moved));
  w.Scalar("slotpilot_watcher_bytes_moved_total", "counter", "Bytes moved by repairs.", static_cast<double>(m.bytes_moved));
  auto stuck = m.stuck_seconds;
  std::sort(stuck.begin(), stuck.end(), [](auto& a, auto& b) { return a.second > b.second; });
  if (stuck.size() > kMaxSlotSeries) stuck.resize(kMaxSlotSeries);
  w.Family("slotpilot_watcher_slot_stuck_seconds", "gauge", "How long a stuck slot has been stuck (at most 20 slots).");
  for (const auto& [slot, seconds] : stuck) w.Sample("slotpilot_watcher_slot_stuck_seconds", {{"slot", std::to_string(slot)}}, seconds);
  auto ages = m.open_slot_ages;
  std::sort(ages.begin(), ages.end(), [](auto& a, auto& b) { return a.age_seconds > b.age_seconds; });
  if (ages.size() > kMaxSlotSeries) ages.resize(kMaxSlotSeries);
  w.Family("slotpilot_watcher_open_slot_age_seconds", "gauge", "How long a slot has been open (at most 20 slots).");
  for (const auto& a : ages) w.Sample("slotpilot_watcher_open_slot_age_seconds", {{"slot", std::to_string(a.slot)}}, a.age_seconds);
}

void WriteClusterHealth(PromWriter& w, const WatcherMetrics& m) {
  w.Scalar("slotpilot_cluster_healthy", "gauge", "1 when every master is reachable and nobody flags one fail/pfail.",
           m.cluster_healthy ? 1 : 0);
  w.Family("slotpilot_cluster_slots", "gauge", "Slots by state as each master's CLUSTER INFO reports them.");
  for (const auto& node : m.masters) {
    for (auto [state, n] : {std::pair<std::string_view, int>{"assigned", node.slots_assigned}, {"ok", node.slots_ok},
                            {"pfail", node.slots_pfail}, {"fail", node.slots_fail}}) {
      w.Sample("slotpilot_cluster_slots", {{"node", node.address}, {"state", std::string(state)}}, n);
    }
  }
  w.Family("slotpilot_cluster_node_reachable", "gauge", "1 when the watcher's last poll reached the master.");
  for (const auto& node : m.masters) w.Sample("slotpilot_cluster_node_reachable", {{"node", node.address}}, node.reachable ? 1 : 0);
  w.Scalar("slotpilot_cluster_flagged_nodes", "gauge", "Nodes some master flags fail, fail?, handshake or noaddr.",
           static_cast<double>(m.flagged_nodes));
  w.Family("slotpilot_cluster_replica_link_up", "gauge", "1 when the replica's master_link_status is up.");
  for (const auto& r : m.replicas) {
    w.Sample("slotpilot_cluster_replica_link_up", {{"replica", r.endpoint.ToString()}}, r.link_status == "up" ? 1 : 0);
  }
}

// Migration-aware throttling: what waited, for how long, what was refused, and each throttled
// node's budget and current rate (labels: throttled nodes only, so bounded by the masters).
void WriteThrottle(PromWriter& w, const StatsTotals& t, const ControlMetrics& c) {
  w.Scalar("slotpilot_throttled_requests_total", "counter", "Requests that waited for a migration source's budget.",
           static_cast<double>(t.throttled_requests));
  w.Scalar("slotpilot_throttle_rejections_total", "counter",
           "Throttled requests answered with an error after waiting throttle-max-delay.",
           static_cast<double>(t.throttle_rejections));
  w.Scalar("slotpilot_throttle_waiting_requests", "gauge", "Requests waiting for budget now.",
           static_cast<double>(t.throttle_waiting));
  w.Family("slotpilot_throttle_delay_seconds", "histogram", "Delay added by the throttle to the requests it let through.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
    cumulative += t.throttle_delay_buckets[i];
    char le[32];
    std::snprintf(le, sizeof(le), "%g", static_cast<double>(Histogram::kBoundsUs[i]) / 1e6);
    w.Sample("slotpilot_throttle_delay_seconds_bucket", {{"le", le}}, static_cast<double>(cumulative));
  }
  w.Sample("slotpilot_throttle_delay_seconds_bucket", {{"le", "+Inf"}}, static_cast<double>(t.throttle_delay_count));
  w.Sample("slotpilot_throttle_delay_seconds_sum", {}, static_cast<double>(t.throttle_delay_sum_us) / 1e6);
  w.Sample("slotpilot_throttle_delay_seconds_count", {}, static_cast<double>(t.throttle_delay_count));
  w.Family("slotpilot_throttle_budget_ops", "gauge", "Budget of a throttled source node, requests/s across workers.");
  for (const ThrottleNodeReport& n : c.throttle_nodes) w.Sample("slotpilot_throttle_budget_ops", {{"node", n.address}}, n.budget);
  w.Family("slotpilot_throttle_rate_ops", "gauge", "Requests/s sent to a throttled source node over the last second.");
  for (const ThrottleNodeReport& n : c.throttle_nodes) w.Sample("slotpilot_throttle_rate_ops", {{"node", n.address}}, n.rate);
}

void WriteControl(PromWriter& w, const StatsTotals& t, const ControlMetrics& c) {
  w.Scalar("slotpilot_topology_version", "gauge", "Version of the topology the workers route with.",
           static_cast<double>(c.topology_version));
  w.Scalar("slotpilot_topology_masters", "gauge", "Masters in the current topology.", static_cast<double>(c.topology_masters));
  w.Scalar("slotpilot_topology_slots_assigned", "gauge", "Slots with an owner in the current topology (16384 when healthy).",
           static_cast<double>(c.topology_slots_assigned));
  w.Scalar("slotpilot_topology_refreshes_total", "counter", "Topology refreshes attempted.", static_cast<double>(c.topology_refreshes));
  w.Scalar("slotpilot_topology_refresh_failures_total", "counter", "Topology refreshes that reached no node.",
           static_cast<double>(c.topology_refresh_failures));
  w.Scalar("slotpilot_topology_refresh_requests_total", "counter", "Refreshes asked for by workers (MOVED, CLUSTERDOWN, lost connections).",
           static_cast<double>(t.topology_refresh_requests));
  w.Family("slotpilot_loop_reports_total", "counter", "Loop reports from workers to the control thread, by outcome.");
  w.Sample("slotpilot_loop_reports_total", {{"outcome", "queued"}}, static_cast<double>(c.loop_reports_queued));
  w.Sample("slotpilot_loop_reports_total", {{"outcome", "dropped"}}, static_cast<double>(c.loop_reports_dropped));
  w.Scalar("slotpilot_throttled_nodes", "gauge", "Source nodes whose client traffic is being throttled.",
           static_cast<double>(c.throttled_nodes));
  WriteThrottle(w, t, c);
  w.Family("slotpilot_config_reloads_total", "counter", "SIGHUP configuration reloads, by result.");
  w.Sample("slotpilot_config_reloads_total", {{"result", "ok"}}, static_cast<double>(c.config_reloads));
  w.Sample("slotpilot_config_reloads_total", {{"result", "error"}}, static_cast<double>(c.config_reload_failures));
  w.Scalar("slotpilot_config_restart_required", "gauge",
           "Options changed by the last reload that only take effect after a restart.",
           static_cast<double>(c.config_restart_required));
  WriteWatcher(w, c.watcher);
  WriteClusterHealth(w, c.watcher);
}

}  // namespace

void StatsTotals::Add(const WorkerStats& s) {
  client_connections_total += s.client_connections_total.value();
  client_connections += s.client_connections.value();
  client_rejected_max_clients += s.client_rejected_max_clients.value();
  client_protocol_errors += s.client_protocol_errors.value();
  client_closed_output_limit += s.client_closed_output_limit.value();
  client_closed_input_limit += s.client_closed_input_limit.value();
  client_closed_idle += s.client_closed_idle.value();
  for (size_t i = 0; i < requests.size(); ++i) requests[i] += s.requests[i].value();
  for (size_t i = 0; i < errors.size(); ++i) errors[i] += s.errors[i].value();
  for (size_t i = 0; i < latency_buckets.size(); ++i) latency_buckets[i] += s.latency.bucket(i);
  latency_count += s.latency.count();
  latency_sum_us += s.latency.sum_us();
  request_timeouts += s.request_timeouts.value();
  redirects_moved += s.redirects_moved.value();
  redirects_ask += s.redirects_ask.value();
  evalsha_as_eval += s.evalsha_as_eval.value();
  for (size_t i = 0; i < retries.size(); ++i) retries[i] += s.retries[i].value();
  for (size_t i = 0; i < redirect_loops.size(); ++i) redirect_loops[i] += s.redirect_loops[i].value();
  loop_holds += s.loop_holds.value();
  loop_hold_releases += s.loop_hold_releases.value();
  loop_hold_expiries += s.loop_hold_expiries.value();
  loop_held_requests += s.loop_held_requests.value();
  upstream_connects += s.upstream_connects.value();
  upstream_connect_failures += s.upstream_connect_failures.value();
  upstream_disconnects += s.upstream_disconnects.value();
  upstream_stalls += s.upstream_stalls.value();
  upstream_connections += s.upstream_connections.value();
  upstream_unreachable_fast_fails += s.upstream_unreachable_fast_fails.value();
  topology_installs += s.topology_installs.value();
  topology_refresh_requests += s.topology_refresh_requests.value();
  throttled_requests += s.throttled_requests.value();
  throttle_rejections += s.throttle_rejections.value();
  throttle_waiting += s.throttle_waiting.value();
  for (size_t i = 0; i < throttle_delay_buckets.size(); ++i) throttle_delay_buckets[i] += s.throttle_delay.bucket(i);
  throttle_delay_count += s.throttle_delay.count();
  throttle_delay_sum_us += s.throttle_delay.sum_us();
}

std::string RenderPrometheus(const StatsTotals& totals, const ControlMetrics& control,
                             const std::vector<LoopRecord>& loops) {
  PromWriter w;
  w.Family("slotpilot_build_info", "gauge", "Build information; always 1.");
  w.Sample("slotpilot_build_info", {{"version", std::string(Version())}}, 1);
  WriteClients(w, totals);
  WriteRequests(w, totals);
  WriteRedirects(w, totals, loops);
  WriteUpstreams(w, totals, control);
  WriteControl(w, totals, control);
  return w.Take();
}

}  // namespace slotpilot::proxy
