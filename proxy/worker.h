// A Worker owns one libuv loop and everything the data path touches on it: its listener
// (SO_REUSEPORT, one per worker), client sessions, upstream connections (one per node), its copy
// of the slot map, pools and stats. Nothing here is shared with other workers, so nothing locks.
//
// Threads: Start() and the Post*/Stop methods may be called from the control thread; everything
// else runs on the worker's own loop thread.
#ifndef SLOTPILOT_PROXY_WORKER_H_
#define SLOTPILOT_PROXY_WORKER_H_

#include <uv.h>

#include <atomic>
#include <cassert>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "proxy/buffer.h"
#include "proxy/client_registry.h"
#include "proxy/dispatcher.h"
#include "proxy/loop_holder.h"
#include "proxy/script_cache.h"
#include "proxy/loop_tracker.h"
#include "proxy/migration_state.h"
#include "proxy/redirect_follower.h"
#include "proxy/request.h"
#include "proxy/routing_table.h"
#include "proxy/stats.h"
#include "proxy/throttle_gate.h"
#include "proxy/timer_wheel.h"
#include "proxy/topology.h"
#include "proxy/worker_options.h"

namespace slotpilot::proxy {

class ClientSession;
class Upstream;

// State shared by all workers and the control plane; everything in it is thread-safe.
struct SharedState {
  std::atomic<int64_t> clients{0};  // across workers, for max-clients
  std::atomic<uint64_t> next_client_id{1};
  // Every client of every worker (CLIENT LIST, INFO clients).
  ClientRegistry client_registry;
  // Asks the control plane for a topology refresh (coalesced and rate-limited there).
  std::function<void(std::string_view reason)> request_topology_refresh;
  // Loop reports for the control thread (bounded; full drops and counts).
  LoopReportQueue* loop_reports = nullptr;
  // Script bodies by SHA1, for EVALSHA on a master that lacks the script.
  ScriptCache* scripts = nullptr;
};

class Worker {
 public:
  Worker(int id, WorkerOptions options, SharedState* shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds the listening socket (so a taken port fails start-up) and starts the loop thread.
  absl::Status Start();
  // Control thread: hands over a new topology snapshot.
  void PostTopology(TopologySnapshot snapshot);
  // Control thread: hands over a new migration state (repaired slots release held requests).
  void PostMigrationState(MigrationStateSnapshot state);
  // Any thread: the nodes this worker throttles now, with budget and rate.
  std::vector<ThrottleNodeReport> ThrottleReports() const { return throttle_.Reports(); }
  // Control thread (SIGHUP): new run-time options. Applied on the loop between callbacks; what is
  // fixed at construction (listener, pools) is kept. Request limits apply to new connections.
  void PostOptions(WorkerOptions options);
  // Any thread: this worker's redirect-loop statistics.
  const LoopTracker& loop_tracker() const { return loops_; }
  // Control thread: stop accepting, let in-flight requests finish for up to `grace_ms`, then
  // close everything and end the loop thread.
  void PostDrain(uint64_t grace_ms);
  void Join();

  // ---- loop thread only ----
  int id() const { return id_; }
  uv_loop_t* loop() { return &loop_; }
  uint64_t now_ms() const { return uv_now(&loop_); }
  const WorkerOptions& options() const { return options_; }
  BlockPool& blocks() { return blocks_; }
  ReplyArena& arena() { return arena_; }
  RoutingTable& routing() { return routing_; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  Dispatcher& dispatcher() { return dispatcher_; }
  RedirectFollower& follower() { return follower_; }
  LoopHolder& holder() { return holder_; }
  ThrottleGate& throttle() { return throttle_; }
  SharedState& shared() { return *shared_; }
  bool draining() const { return draining_; }
  const std::string& redis_version() const { return redis_version_; }

  Request* NewRequest(ClientSession* session);
  void Retain(Request* r) {
    assert(r->refs < UINT32_MAX);
    ++r->refs;
  }
  void Release(Request* r);
  // Answers a request: its reply goes to the client in request order.
  void Complete(Request* r, Slice reply, bool is_error);
  void CompleteWithError(Request* r, std::string_view error_line);  // "-ERR ...\r\n" or text
  void TrackDeadline(Request* r);
  void ScheduleRetry(Request* r, uint64_t due_ms);
  // Cancels r's retry/hold timer, dropping the reference it held.
  void CancelRetry(Request* r);
  // Counts a redirect loop of r and reports it to the control thread (rate-limited per slot).
  void RecordLoop(Request* r, uint16_t slot, LoopPattern pattern, const std::string& chain);

  Upstream* UpstreamFor(uint16_t node);
  // Takes a dedicated connection that is no longer needed: shut down now, freed at a safe point
  // (never inside its own callbacks).
  void RetireUpstream(std::unique_ptr<Upstream> upstream);
  void MarkDirty(ClientSession* session);
  void MarkDirty(Upstream* upstream);
  void RequestTopologyRefresh(std::string_view reason);

  // Session bookkeeping.
  void OnSessionClosed(ClientSession* session);
  size_t session_count() const { return sessions_.size(); }

 private:
  void Run();
  static void OnConnection(uv_stream_t* server, int status);
  static void OnCheck(uv_check_t* handle);
  static void OnPrepare(uv_prepare_t* handle);
  static void OnAsync(uv_async_t* handle);
  static void OnDeadlineTick(uv_timer_t* handle);
  static void OnRetryTick(uv_timer_t* handle);
  static void OnSweep(uv_timer_t* handle);
  void SweepStalledUpstreams(uint64_t now);
  static void OnDrainTimeout(uv_timer_t* handle);
  static void OnHoldTick(uv_timer_t* handle);
  void OnDeadline(Request* r);
  void Accept();
  void FlushDirty();
  void InstallPendingTopology();
  void InstallPendingOptions();
  void HandleDrainRequest();
  void MaybeFinishDrain();
  void CloseEverything();
  void ArmWheelTimer(uv_timer_t* timer, const TimerWheel& wheel);

  const int id_;
  WorkerOptions options_;  // replaced only on the loop thread (InstallPendingOptions)
  SharedState* shared_;

  uv_loop_t loop_;
  uv_tcp_t listener_;
  int listen_fd_ = -1;
  uv_check_t check_;      // flushes what I/O callbacks queued, right after the poll
  uv_prepare_t prepare_;  // flushes what timer callbacks queued, before the loop blocks again
  uv_async_t async_;
  uv_timer_t deadline_timer_;
  uv_timer_t retry_timer_;
  uv_timer_t sweep_timer_;
  uv_timer_t drain_timer_;
  uv_timer_t hold_timer_;
  std::thread thread_;

  BlockPool blocks_;
  RequestPool requests_;
  ReplyArena arena_;
  RoutingTable routing_;
  WorkerStats stats_;
  Dispatcher dispatcher_;
  RedirectFollower follower_;
  TimerWheel deadlines_;
  TimerWheel retries_;
  LoopTracker loops_;
  LoopHolder holder_;
  ThrottleGate throttle_;

  std::vector<std::unique_ptr<Upstream>> upstreams_;  // by routing node index
  std::vector<std::unique_ptr<Upstream>> stalled_;    // no new requests; closed once drained
  std::vector<std::unique_ptr<Upstream>> retired_;    // freed in the next check phase
  std::vector<ClientSession*> sessions_;              // every open session (for sweeps, drain)
  std::vector<ClientSession*> dirty_sessions_;
  std::vector<Upstream*> dirty_upstreams_;
  bool draining_ = false;
  bool closing_ = false;
  std::string redis_version_ = "0.0.0";  // until the first topology reports the cluster's
  uint64_t last_refresh_request_ms_ = 0;
  std::string error_scratch_;

  // Mailbox from the control thread.
  std::mutex mailbox_mu_;
  TopologySnapshot pending_topology_ ABSL_GUARDED_BY(mailbox_mu_);
  MigrationStateSnapshot pending_migration_state_ ABSL_GUARDED_BY(mailbox_mu_);
  std::unique_ptr<WorkerOptions> pending_options_ ABSL_GUARDED_BY(mailbox_mu_);
  bool drain_requested_ ABSL_GUARDED_BY(mailbox_mu_) = false;
  bool mailbox_closed_ ABSL_GUARDED_BY(mailbox_mu_) = false;  // async_ is closed: post nothing
  uint64_t drain_grace_ms_ ABSL_GUARDED_BY(mailbox_mu_) = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_WORKER_H_
