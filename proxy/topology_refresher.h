// Keeps the cluster topology fresh and hands each new version to the workers.
//
// Many sidecars share one cluster, so refreshes must never storm it: a periodic refresh every
// `interval` (±20% jitter), plus refreshes requested by workers (MOVED, CLUSTERDOWN, a lost or
// refused connection) that are coalesced and never closer than `min_interval`. After a requested
// refresh that found nothing new (a failover still in progress), a few follow-ups at growing
// intervals pick up the promoted replica without waiting for any MOVED.
//
// Threads: runs on the control loop; RequestRefresh() may be called from any thread. Fetches use
// blocking clients with short timeouts (the control loop serves nothing latency-critical).
#ifndef SLOTPILOT_PROXY_TOPOLOGY_REFRESHER_H_
#define SLOTPILOT_PROXY_TOPOLOGY_REFRESHER_H_

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "migration/redis_client.h"
#include "proxy/topology.h"

namespace slotpilot::proxy {

struct SeedEndpoint {
  std::string host;
  uint16_t port = 0;
};

struct TopologyRefresherOptions {
  std::vector<SeedEndpoint> seeds;
  uint64_t interval_ms = 10000;
  uint64_t min_interval_ms = 1000;
  migration::RedisClientOptions client;  // timeouts and credentials
  int max_nodes_per_attempt = 3;
};

class TopologyRefresher {
 public:
  using Publish = std::function<void(TopologySnapshot)>;
  TopologyRefresher(uv_loop_t* loop, TopologyRefresherOptions options, Publish publish);
  ~TopologyRefresher();

  // Refreshes at once, then keeps refreshing. Control loop thread.
  void Start();
  void Stop();
  // Any thread: ask for a refresh soon (coalesced, rate-limited).
  void RequestRefresh();

  // Any thread: the latest topology (null before the first success).
  TopologySnapshot current() const;
  uint64_t refreshes() const { return refreshes_.load(); }
  uint64_t failures() const { return failures_.load(); }
  std::string last_error() const;
  // Any thread: each master's reachability as of the last refresh.
  std::vector<MasterHealth> masters() const;

 private:
  static void OnTimer(uv_timer_t* t);
  static void OnAsync(uv_async_t* a);
  void RefreshNow();
  void ScheduleNext(bool requested, bool changed, bool ok);
  std::vector<SeedEndpoint> Candidates();
  absl::StatusOr<Topology> FetchFrom(const SeedEndpoint& node);
  void CheckMasters(const Topology& topology);
  uint64_t Jittered(uint64_t ms);

  uv_loop_t* loop_;
  TopologyRefresherOptions options_;
  Publish publish_;
  uv_timer_t timer_;
  uv_async_t async_;
  bool started_ = false;
  std::atomic<bool> requested_{false};
  uint64_t last_refresh_ms_ = 0;
  int follow_ups_left_ = 0;
  uint64_t next_version_ = 1;
  std::minstd_rand rng_{std::random_device{}()};

  mutable std::mutex mu_;
  TopologySnapshot current_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::vector<MasterHealth> masters_ ABSL_GUARDED_BY(mu_);
  // Control loop only: kept open between checks so a health check is one PING.
  absl::flat_hash_map<std::string, std::unique_ptr<migration::RedisClient>> health_clients_;
  std::atomic<uint64_t> refreshes_{0};
  std::atomic<uint64_t> failures_{0};
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_TOPOLOGY_REFRESHER_H_
