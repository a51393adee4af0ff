// One worker's throttle: decides, for each request the Router sends on a node's shared upstream,
// whether it goes now or waits for budget, because a slot is migrating away from that node.
//
// Which nodes: the sources of the open slots in the latest MigrationState (the watcher), plus
// any node that answered ASK (the data path's own evidence, before the next poll confirms it;
// such a throttle lifts evidence_ttl_ms after the last ASK unless the watcher confirms it).
// Mode node: every request to the node; mode slot: only requests for its migrating slots.
//
// Over budget, a request waits in its node's FIFO queue (so requests to one node keep their
// order; replies keep the client's order as always), at most max_delay_ms, then it is answered
// "ERR slotpilot: throttled: node H:P is migrating slot N; request waited D ms for budget".
// While any request of a client waits, the client's socket is not read (TCP backpressure).
// Nothing else is touched: requests to other nodes take the unthrottled path (one branch).
//
// Lifetime: owned by its Worker; a waiting request holds a reference (Worker::Retain) until it
// is sent, rejected or dropped (its client gone / answered at its deadline). Loop thread only,
// except Reports() (any thread).
#ifndef SLOTPILOT_PROXY_THROTTLE_GATE_H_
#define SLOTPILOT_PROXY_THROTTLE_GATE_H_

#include <uv.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "protocol/slot.h"
#include "proxy/migration_state.h"
#include "proxy/request.h"
#include "proxy/ring_buffer.h"
#include "proxy/throttle.h"

namespace slotpilot::proxy {

class ClientSession;
class Worker;

class ThrottleGate {
 public:
  ThrottleGate(Worker* worker, ThrottleOptions options);
  ~ThrottleGate();
  ThrottleGate(const ThrottleGate&) = delete;
  ThrottleGate& operator=(const ThrottleGate&) = delete;

  void Start(uv_loop_t* loop);
  // Shutdown: drops every waiting request and closes the release timer.
  void Close();

  // Hot path, Router: true = send r to `node` now; false = r waits (or was answered).
  bool Admit(Request* r, uint16_t node) {
    if (options_.mode == ThrottleOptions::Mode::kOff) return true;
    if (node >= nodes_.size()) Grow(node);
    NodeState& n = nodes_[node];
    if (n.active && !AdmitThrottled(r, node, n)) return false;
    n.meter.Add();  // the node's rate, for fraction budgets and the admin view
    return true;
  }

  void Configure(const ThrottleOptions& options);
  void OnMigrationState(const MigrationState& state);
  // `node` answered ASK for `slot`: a migration is under way there.
  void OnAskEvidence(uint16_t node, uint16_t slot);
  // About once a second: meters, evidence expiry, the report for the admin thread.
  void OnSecond(uint64_t now_ms);

  bool any_active() const { return active_count_ > 0; }
  // Any thread: the latest per-node report of this worker (throttled nodes only).
  std::vector<ThrottleNodeReport> Reports() const;

 private:
  struct Waiter {
    Request* request = nullptr;
    uint64_t since_ms = 0;
    bool exempt = false;
  };
  struct NodeState {
    bool active = false;
    bool watched = false;          // listed as a source in the latest MigrationState
    uint64_t evidence_until_ms = 0;  // ASK evidence keeps it active until then
    uint16_t example_slot = 0;     // a migrating slot, for the error text
    double baseline = 0;           // this worker's rate before the throttle started
    TokenBucket bucket;
    RateMeter meter;
    RingBuffer<Waiter> queue;
  };

  void Grow(uint16_t node);
  bool AdmitThrottled(Request* r, uint16_t node, NodeState& n);
  void Enqueue(Request* r, uint16_t node, NodeState& n, bool exempt);
  void Activate(uint16_t node, NodeState& n);
  void UpdateActive(uint16_t node, NodeState& n);
  void Release(uint16_t node, NodeState& n);
  void Reject(Request* r, uint16_t node, const NodeState& n, uint64_t waited_ms);
  void DoneWaiting(Request* r);
  void ResumeClients();
  void ArmTimer();
  void PublishReport();
  static void OnTimer(uv_timer_t* handle);

  Worker* worker_;
  ThrottleOptions options_;
  std::vector<NodeState> nodes_;  // by worker-local node index
  std::array<uint16_t, protocol::kSlotCount> slot_source_;  // migrating slot -> source node
  std::vector<uint16_t> migrating_slots_;  // slots set in slot_source_, to clear them
  size_t active_count_ = 0;
  size_t waiting_ = 0;
  std::vector<ClientSession*> resume_;  // clients whose last waiting request just left
  uv_timer_t timer_;
  bool started_ = false;
  bool closed_ = false;

  mutable std::mutex report_mu_;
  std::vector<ThrottleNodeReport> report_ ABSL_GUARDED_BY(report_mu_);
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_THROTTLE_GATE_H_
