#include "proxy/throttle_gate.h"

#include <algorithm>

#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/logging.h"
#include "proxy/routing_table.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// Waiting requests are released in batches on this tick: fine enough for budgets up to tens of
// thousands of ops/s per worker, coarse enough to cost nothing.
constexpr uint64_t kReleaseTickMs = 2;
constexpr size_t kMaxReportedSlots = 8;

// The client a request answers to (a sub-request answers through its parent); null once gone.
ClientSession* OwnerSession(const Request* r) {
  return r->parent != nullptr ? r->parent->session : r->session;
}

}  // namespace

ThrottleGate::ThrottleGate(Worker* worker, ThrottleOptions options)
    : worker_(worker), options_(options) {
  slot_source_.fill(RoutingTable::kNoNode);
}

ThrottleGate::~ThrottleGate() = default;

void ThrottleGate::Start(uv_loop_t* loop) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  started_ = true;
}

void ThrottleGate::Close() {
  if (closed_) return;
  closed_ = true;
  for (NodeState& n : nodes_) {
    while (!n.queue.empty()) {
      Request* r = n.queue.pop_front().request;
      DoneWaiting(r);
      worker_->Release(r);
    }
  }
  resume_.clear();  // the clients are closing too
  if (started_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void ThrottleGate::Grow(uint16_t node) { nodes_.resize(static_cast<size_t>(node) + 1); }

bool ThrottleGate::AdmitThrottled(Request* r, uint16_t node, NodeState& n) {
  if (options_.mode == ThrottleOptions::Mode::kSlot &&
      !(r->keyed && slot_source_[r->slot] == node)) {
    return true;  // slot mode: only the migrating slots' requests count
  }
  bool exempt = options_.exempt_reads && r->command_class == static_cast<uint16_t>(CommandClass::kRead);
  if (n.queue.empty() && (exempt || n.bucket.TryTake(worker_->now_ms()))) return true;
  if (!exempt && options_.max_delay_ms == 0) {
    worker_->stats().throttle_rejections.Add();
    Reject(r, node, n, 0);
    return false;
  }
  Enqueue(r, node, n, exempt);
  return false;
}

void ThrottleGate::Enqueue(Request* r, uint16_t node, NodeState& n, bool exempt) {
  worker_->Retain(r);
  r->state = RequestState::kInFlight;
  r->node = node;  // a deadline error names the node it waited for
  n.queue.push_back(Waiter{r, worker_->now_ms(), exempt});
  ++waiting_;
  worker_->stats().throttled_requests.Add();
  worker_->stats().throttle_waiting.Add(1);
  if (ClientSession* s = OwnerSession(r)) ++s->throttle_waiting;
  ArmTimer();
}

void ThrottleGate::DoneWaiting(Request* r) {
  --waiting_;
  worker_->stats().throttle_waiting.Add(-1);
  ClientSession* s = OwnerSession(r);
  if (s == nullptr || s->throttle_waiting == 0) return;
  if (--s->throttle_waiting == 0) resume_.push_back(s);
}

// Resuming a client reads and dispatches its buffered requests, which may come back here:
// done only after the queues are no longer being walked.
void ThrottleGate::ResumeClients() {
  for (size_t i = 0; i < resume_.size(); ++i) {  // by index: a resumed client may add to it
    ClientSession* s = resume_[i];
    if (s->throttle_waiting == 0) s->ResumeAfterThrottle();
  }
  resume_.clear();
}

void ThrottleGate::Reject(Request* r, uint16_t node, const NodeState& n, uint64_t waited_ms) {
  uint16_t slot = r->keyed && slot_source_[r->slot] == node ? r->slot : n.example_slot;
  worker_->CompleteWithError(
      r, StrCat("ERR slotpilot: throttled: node ", worker_->routing().node(node).address,
                " is migrating slot ", slot, "; request waited ", waited_ms, "ms for budget"));
}

// Sends what the budget allows from the front of the queue, drops requests nobody waits for any
// more, and rejects those that waited max_delay_ms. FIFO: the front always waited longest.
void ThrottleGate::Release(uint16_t node, NodeState& n) {
  uint64_t now = worker_->now_ms();
  while (!n.queue.empty()) {
    Waiter& w = n.queue.front();
    Request* r = w.request;
    uint64_t waited = now - std::min(now, w.since_ms);
    if (r->abandoned()) {
      n.queue.pop_front();
      DoneWaiting(r);
      worker_->Release(r);
      continue;
    }
    if (!n.active || w.exempt || n.bucket.TryTake(now)) {
      n.queue.pop_front();
      DoneWaiting(r);
      worker_->stats().throttle_delay.Observe(waited * 1000);
      n.meter.Add();
      worker_->UpstreamFor(node)->Send(r);
      worker_->Release(r);
      continue;
    }
    if (waited < options_.max_delay_ms) break;
    n.queue.pop_front();
    DoneWaiting(r);
    worker_->stats().throttle_rejections.Add();
    Reject(r, node, n, waited);
    worker_->Release(r);
  }
}

void ThrottleGate::ArmTimer() {
  if (!started_ || closed_ || uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) return;
  uv_timer_start(&timer_, OnTimer, kReleaseTickMs, kReleaseTickMs);
}

void ThrottleGate::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<ThrottleGate*>(handle->data);
  uv_update_time(handle->loop);
  for (size_t i = 0; i < self->nodes_.size(); ++i) {
    if (!self->nodes_[i].queue.empty()) self->Release(static_cast<uint16_t>(i), self->nodes_[i]);
  }
  if (self->waiting_ == 0) uv_timer_stop(handle);
  self->ResumeClients();
}

void ThrottleGate::Activate(uint16_t node, NodeState& n) {
  n.active = true;
  ++active_count_;
  n.baseline = n.meter.average();
  double budget = WorkerBudget(options_, n.baseline);
  n.bucket.Configure(budget, BurstFor(options_, budget), worker_->now_ms());
  n.bucket.Reset(worker_->now_ms());
  SLOTPILOT_LOG_RATE_LIMITED(info, "worker {}: throttling node {} to {:.0f} ops/s (slot {} migrating)",
                             worker_->id(), worker_->routing().node(node).address, budget, n.example_slot);
}

// Starts or lifts the node's throttle from what is known about it now.
void ThrottleGate::UpdateActive(uint16_t node, NodeState& n) {
  bool want = options_.mode != ThrottleOptions::Mode::kOff &&
              (n.watched || n.evidence_until_ms > worker_->now_ms());
  if (want == n.active) return;
  if (want) {
    Activate(node, n);
  } else {
    n.active = false;
    --active_count_;
    Release(node, n);  // everything waiting goes now
  }
  PublishReport();
}

void ThrottleGate::Configure(const ThrottleOptions& options) {
  options_ = options;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    NodeState& n = nodes_[i];
    UpdateActive(static_cast<uint16_t>(i), n);
    if (!n.active) continue;
    double budget = WorkerBudget(options_, n.baseline);
    n.bucket.Configure(budget, BurstFor(options_, budget), worker_->now_ms());
  }
  if (waiting_ > 0) ArmTimer();
  ResumeClients();
  PublishReport();
}

void ThrottleGate::OnMigrationState(const MigrationState& state) {
  for (uint16_t slot : migrating_slots_) slot_source_[slot] = RoutingTable::kNoNode;
  migrating_slots_.clear();
  std::vector<bool> watched(nodes_.size(), false);
  for (const MigrationState::OpenSlot& o : state.open_slots) {
    if (o.source_host.empty()) continue;
    uint16_t node = worker_->routing().FindOrAddNode(o.source_host, o.source_port);
    if (node == RoutingTable::kNoNode) continue;
    if (node >= nodes_.size()) Grow(node);
    if (node >= watched.size()) watched.resize(static_cast<size_t>(node) + 1, false);
    if (!watched[node]) nodes_[node].example_slot = o.slot;
    watched[node] = true;
    slot_source_[o.slot] = node;
    migrating_slots_.push_back(o.slot);
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    NodeState& n = nodes_[i];
    n.watched = i < watched.size() && watched[i];
    // The watcher's word replaces ASK evidence: if it no longer lists the node, the migration
    // ended (a new ASK starts the throttle again at once).
    if (!n.watched) n.evidence_until_ms = 0;
    UpdateActive(static_cast<uint16_t>(i), n);
  }
  ResumeClients();
}

void ThrottleGate::OnAskEvidence(uint16_t node, uint16_t slot) {
  if (options_.mode == ThrottleOptions::Mode::kOff) return;
  if (node >= nodes_.size()) Grow(node);
  NodeState& n = nodes_[node];
  n.evidence_until_ms = worker_->now_ms() + options_.evidence_ttl_ms;
  if (slot_source_[slot] == RoutingTable::kNoNode) {
    slot_source_[slot] = node;
    migrating_slots_.push_back(slot);
  }
  if (!n.active) n.example_slot = slot;
  UpdateActive(node, n);  // only ever starts a throttle here: nobody waiting is released
}

void ThrottleGate::OnSecond(uint64_t now_ms) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    NodeState& n = nodes_[i];
    n.meter.Tick(now_ms, /*hold_average=*/n.active);  // the baseline is the pre-throttle rate
    if (n.active && !n.watched) UpdateActive(static_cast<uint16_t>(i), n);  // evidence expiry
  }
  ResumeClients();
  PublishReport();
}

void ThrottleGate::PublishReport() {
  std::vector<ThrottleNodeReport> reports;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const NodeState& n = nodes_[i];
    if (!n.active) continue;
    ThrottleNodeReport r;
    r.address = worker_->routing().node(static_cast<uint16_t>(i)).address;
    for (uint16_t slot : migrating_slots_) {
      if (slot_source_[slot] == i && r.slots.size() < kMaxReportedSlots) r.slots.push_back(slot);
    }
    r.evidence = n.watched ? "watcher" : "ask";
    r.budget = n.bucket.rate();
    r.rate = n.meter.last();
    r.waiting = n.queue.size();
    reports.push_back(std::move(r));
  }
  std::lock_guard<std::mutex> lock(report_mu_);
  report_.swap(reports);
}

std::vector<ThrottleNodeReport> ThrottleGate::Reports() const {
  std::lock_guard<std::mutex> lock(report_mu_);
  return report_;
}

}  // namespace slotpilot::proxy
