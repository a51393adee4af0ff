// loop-policy=hold: requests caught in a redirect loop are parked per slot instead of failing,
// and retried when the slot is repaired. Bounded in count (loop-hold-max-requests) and time
// (loop-hold-timeout, and never past the request's own deadline); on expiry the client gets the
// loop error.
//
// Repair is noticed three ways: the watcher bumps the slot's repair generation in MigrationState;
// a new topology arrives; or a probe succeeds. Probes cost one request per slot per probe
// interval (backing off), never one per held request, so a stuck slot causes no upstream storm.
// Loop thread only.
#ifndef SLOTPILOT_PROXY_LOOP_HOLDER_H_
#define SLOTPILOT_PROXY_LOOP_HOLDER_H_

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "proxy/migration_state.h"
#include "proxy/request.h"

namespace slotpilot::proxy {

class Worker;

class LoopHolder {
 public:
  explicit LoopHolder(Worker* worker);

  // Parks r, which looped on r->slot. Returns false when the hold limit is reached or r has no
  // time left (the caller answers with `error`).
  bool Hold(Request* r, std::string error);
  // r's hold expired (its retry timer fired while held): answer it with the slot's loop error.
  void Expire(Request* r);
  // A probe came back with a real answer: the slot no longer loops; retry everyone held on it.
  void OnProbeResolved(Request* probe);
  // A probe was answered by the deadline timer or the client left.
  void OnProbeAbandoned(uint16_t slot);

  void OnMigrationState(MigrationStateSnapshot state);
  void OnTopologyInstalled();

  // Periodic (from the worker's timer): sends due probes.
  void Tick(uint64_t now_ms);
  size_t held() const { return held_count_; }

 private:
  struct HeldSlot {
    std::vector<Request*> requests;  // oldest first
    std::string error;               // the loop error for this slot, for expiries
    uint32_t repair_generation = 0;
    uint64_t next_probe_ms = 0;
    uint64_t probe_backoff_ms = 0;
    bool probe_in_flight = false;
  };
  void ReleaseSlot(uint16_t slot);
  void Unpark(Request* r);
  void SendProbe(uint16_t slot, HeldSlot* held);

  Worker* worker_;
  absl::flat_hash_map<uint16_t, HeldSlot> slots_;
  size_t held_count_ = 0;
  MigrationStateSnapshot state_;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_LOOP_HOLDER_H_
