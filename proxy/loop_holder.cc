#include "proxy/loop_holder.h"

#include <algorithm>

#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {
constexpr uint64_t kFirstProbeMs = 50;
constexpr uint64_t kMaxProbeBackoffMs = 250;  // notice a repair within a quarter second
}  // namespace

LoopHolder::LoopHolder(Worker* worker) : worker_(worker) {}

bool LoopHolder::Hold(Request* r, std::string error) {
  const WorkerOptions& o = worker_->options();
  uint64_t now = worker_->now_ms();
  if (r->hold_deadline_ms == 0) r->hold_deadline_ms = std::min(now + o.loop_hold_timeout_ms, r->deadline_ms);
  if (held_count_ >= o.loop_hold_max_requests || now >= r->hold_deadline_ms) {
    if (r->probing) worker_->stats().loop_hold_expiries.Add();  // was held: its hold ends here
    return false;
  }
  bool reheld = r->probing;  // a probe going back to the hold is not a new held request
  auto [it, inserted] = slots_.try_emplace(r->slot);
  HeldSlot& slot = it->second;
  if (inserted) {
    slot.repair_generation = state_ ? state_->repair_generation[r->slot] : 0;
    slot.probe_backoff_ms = kFirstProbeMs;
    slot.next_probe_ms = now + kFirstProbeMs;
  }
  slot.error = std::move(error);
  if (r->probing) {  // a probe that looped again: the slot is still broken, back off
    r->probing = false;
    slot.probe_in_flight = false;
    slot.probe_backoff_ms = std::min(slot.probe_backoff_ms * 2, kMaxProbeBackoffMs);
    slot.next_probe_ms = now + slot.probe_backoff_ms;
  }
  r->held = true;
  r->state = RequestState::kWaitingRetry;
  slot.requests.push_back(r);
  ++held_count_;
  if (!reheld) worker_->stats().loop_holds.Add();
  worker_->stats().loop_held_requests.Set(static_cast<int64_t>(held_count_));
  worker_->ScheduleRetry(r, r->hold_deadline_ms);  // the expiry
  return true;
}

void LoopHolder::Expire(Request* r) {
  auto it = slots_.find(r->slot);
  std::string error = "TRYAGAIN slotpilot: slot is in a redirect loop";
  if (it != slots_.end()) {
    auto& reqs = it->second.requests;
    auto pos = std::find(reqs.begin(), reqs.end(), r);
    if (pos != reqs.end()) {
      reqs.erase(pos);
      --held_count_;
    }
    error = it->second.error;
    if (reqs.empty() && !it->second.probe_in_flight) slots_.erase(it);
  }
  r->held = false;
  worker_->stats().loop_hold_expiries.Add();
  worker_->stats().loop_held_requests.Set(static_cast<int64_t>(held_count_));
  worker_->CompleteWithError(r, error);
}

// Takes r out of the hold and routes it again from scratch. Routing comes first so the upstream
// holds a reference before the hold's own (its expiry timer) is dropped.
void LoopHolder::Unpark(Request* r) {
  r->held = false;
  r->hops.Clear();
  r->asking = false;
  if (!r->abandoned()) {
    worker_->follower().router().Route(r);
  } else if (r->probing) {  // its client left while held: it cannot probe, let the next one
    r->probing = false;
    OnProbeAbandoned(r->slot);
  }
  worker_->CancelRetry(r);
}

void LoopHolder::ReleaseSlot(uint16_t slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return;
  std::vector<Request*> requests = std::move(it->second.requests);
  held_count_ -= requests.size();
  slots_.erase(it);
  worker_->stats().loop_hold_releases.Add(requests.size());
  worker_->stats().loop_held_requests.Set(static_cast<int64_t>(held_count_));
  for (Request* r : requests) Unpark(r);
}

void LoopHolder::OnProbeResolved(Request* probe) {
  probe->probing = false;
  worker_->stats().loop_hold_releases.Add();  // the probe was a held request too
  ReleaseSlot(probe->slot);
}

void LoopHolder::OnProbeAbandoned(uint16_t slot) {
  auto it = slots_.find(slot);
  if (it == slots_.end()) return;
  it->second.probe_in_flight = false;
  if (it->second.requests.empty()) slots_.erase(it);
}

void LoopHolder::OnMigrationState(MigrationStateSnapshot state) {
  state_ = std::move(state);
  std::vector<uint16_t> repaired;
  for (const auto& [slot, held] : slots_) {
    if (state_->repair_generation[slot] != held.repair_generation) repaired.push_back(slot);
  }
  for (uint16_t slot : repaired) ReleaseSlot(slot);
}

void LoopHolder::OnTopologyInstalled() {
  uint64_t now = worker_->now_ms();
  for (auto& [slot, held] : slots_) held.next_probe_ms = now;  // probe at once, don't flood
}

void LoopHolder::Tick(uint64_t now_ms) {
  std::vector<uint16_t> due;  // probing can answer requests and change slots_: collect first
  for (auto& [slot, held] : slots_) {
    if (!held.probe_in_flight && !held.requests.empty() && now_ms >= held.next_probe_ms) {
      due.push_back(slot);
    }
  }
  for (uint16_t slot : due) {
    auto it = slots_.find(slot);
    if (it != slots_.end() && !it->second.probe_in_flight && !it->second.requests.empty()) {
      SendProbe(slot, &it->second);
    }
  }
}

void LoopHolder::SendProbe(uint16_t slot, HeldSlot* held) {
  Request* r = held->requests.front();
  held->requests.erase(held->requests.begin());
  --held_count_;
  held->probe_in_flight = true;
  r->probing = true;
  Unpark(r);  // may answer r at once (and touch slots_): `held` is not used after this
}

}  // namespace slotpilot::proxy
