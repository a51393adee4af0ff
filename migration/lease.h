// Lease: exactly one actor per slot across every sidecar (MIGRATION.md C.2 step 3).
//
// The lease, its fencing counter, the repair journal and the sidecar heartbeats are plain keys in
// the control hash tag "{mwatch}", so they all live on whichever master owns ControlSlot(), and
// every multi-key script stays in one slot:
//
//   {mwatch}:lease:<slot>    "<sidecar-id>:<token>", SET NX PX <ttl>
//   {mwatch}:fence:<slot>    INCR counter; its value at acquisition is the fencing token
//   {mwatch}:journal:<slot>  hash: token, step, action, source, target, updated_at, holder, ...
//   {mwatch}:sidecars        sorted set: sidecar id -> last heartbeat (server time, ms)
//   {mwatch}:stash:<slot>:<token>:<key>  DUMP payload of a conflicting copy the finisher removed
//
// Acquire, renew (compare-and-PEXPIRE), release (compare-and-DEL) and journal writes (compare,
// then HSET) are Lua scripts, so a holder that lost its lease can neither extend it nor write the
// journal. A failed Renew() means: stop at once, do not run the next step.
//
// The watcher must never migrate ControlSlot() itself. While that slot is open (ASK, TRYAGAIN) or
// the cluster is down, every call fails with Unavailable and nobody acts.
//
// Replication is asynchronous: after a failover of the control master a lease can be lost or
// doubled. Acquire() therefore WAITs for one replica when the control master has replicas, and the
// finisher's steps are idempotent and deterministic so that two holders would act alike.
//
// Thread-compatible: one Lease per watcher, used on the watcher's thread only.
#ifndef SLOTPILOT_MIGRATION_LEASE_H_
#define SLOTPILOT_MIGRATION_LEASE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "migration/cluster_view.h"
#include "migration/redis_client.h"
#include "protocol/resp.h"

namespace slotpilot::migration {

// Returns a connected client for a node (ClusterView::Client in production). The pointer stays
// owned by the connector and valid until the next call for the same endpoint.
using NodeConnector = std::function<absl::StatusOr<RedisClient*>(const Endpoint&)>;

struct LeaseOptions {
  std::string sidecar_id;                          // unique per sidecar; may not be empty
  std::chrono::milliseconds ttl{90000};            // > 3x the longest blocking step
  std::chrono::milliseconds heartbeat_ttl{15000};  // a sidecar is live this long after a beat
  std::chrono::milliseconds journal_ttl{std::chrono::hours(24 * 7)};
  bool wait_for_replica = true;  // WAIT 1 100 after acquiring (if replicas)
};

// Who holds a slot's lease right now.
struct LeaseHolder {
  std::string sidecar_id;
  uint64_t token = 0;
  int64_t pttl_ms = -1;  // remaining lifetime as the control master reports it
};

// The repair journal of one slot: the intent and the last step, so a successor resumes.
struct Journal {
  uint64_t token = 0;  // fencing token of the writer
  std::string holder;  // sidecar id of the writer
  std::string step;    // last step begun ("preflight", "open", "move", ..., "done", "failed")
  std::string action;  // the intent ("forward", "drain", "close", "assign", ...)
  std::string source;  // node ids ("" when not applicable)
  std::string target;
  int64_t updated_at_ms = 0;  // server time of the write
  int64_t attempts = 0;       // retry budget used by the current step (IOERR on write/connect)
  int64_t keys_before = -1;   // key total in the slot across masters when the repair began
  std::string note;           // last reason / error, for operators

  bool done() const { return step == "done"; }
};

class Lease {
 public:
  Lease(LeaseOptions options, NodeConnector connector);

  // Slot of the control hash tag "{mwatch}". The watcher must refuse to act on it.
  static uint16_t ControlSlot();
  static std::string LeaseKey(uint16_t slot);
  static std::string FenceKey(uint16_t slot);
  static std::string JournalKey(uint16_t slot);
  static std::string SidecarsKey();

  // Points the lease at the master that owns ControlSlot() in `snapshot` (the master claiming it
  // in its own view; with several claims, the highest config epoch). A stale choice is corrected
  // by following one MOVED per call.
  absl::Status UpdateView(const ClusterSnapshot& snapshot);
  void SetControlEndpoint(Endpoint endpoint) { control_ = std::move(endpoint); }
  const std::optional<Endpoint>& control_endpoint() const { return control_; }

  // Tries to take the lease of `slot`: INCR the fence, SET NX PX, atomically. Returns true when
  // this sidecar now holds it (token()), false when another holder does (see Holder()).
  absl::StatusOr<bool> Acquire(uint16_t slot);
  // Compare-and-PEXPIRE. FailedPrecondition when the lease is no longer ours: stop at once.
  absl::Status Renew(uint16_t slot);
  // Compare-and-DEL. Does nothing when the lease is not ours (any more).
  absl::Status Release(uint16_t slot);
  // The current holder as the control master sees it; nullopt when free.
  absl::StatusOr<std::optional<LeaseHolder>> Holder(uint16_t slot);
  // This sidecar's belief: the token it holds for `slot`, if it thinks it holds the lease.
  std::optional<uint64_t> token(uint16_t slot) const;
  // Forgets a lease locally without touching the cluster (tests: simulate a crashed holder).
  void Abandon(uint16_t slot) { held_.erase(slot); }

  // Writes the journal fields, fenced: only while this sidecar holds the lease (it also renews
  // the lease). FailedPrecondition when the lease is lost. token/holder/updated_at are filled in.
  absl::Status WriteJournal(uint16_t slot, const Journal& journal);
  absl::StatusOr<std::optional<Journal>> ReadJournal(uint16_t slot);

  // Saves the DUMP payload of a user key's losing copy (a conflict the finisher resolved) under
  // StashKey(slot, token, key), fenced like the journal; it expires with journal_ttl. Restore it
  // with `RESTORE <key> 0 <payload>`. Returns the stash key.
  absl::StatusOr<std::string> Stash(uint16_t slot, std::string_view key, std::string_view payload);
  static std::string StashKey(uint16_t slot, uint64_t token, std::string_view key);

  // Heartbeat into {mwatch}:sidecars (server time). IsPreferred() and OtherActor() beat by
  // themselves (at most every heartbeat_ttl / 3); call it directly to be counted as live sooner.
  absl::Status Heartbeat();
  // Sidecar ids with a heartbeat younger than heartbeat_ttl, sorted.
  absl::StatusOr<std::vector<std::string>> LiveSidecars();
  // Rendezvous (highest random weight) hashing: the id among `ids` that should act on `slot`.
  static std::string RendezvousWinner(uint16_t slot, absl::Span<const std::string> ids);
  // True when this sidecar wins rendezvous hashing over the live sidecars (itself included), so
  // only one sidecar even tries to acquire. Others observe.
  absl::StatusOr<bool> IsPreferred(uint16_t slot);
  // For StuckDetectorOptions::lease_holder: who acts on `slot` if not this sidecar. The lease's
  // holder when another sidecar holds it; else, with `rendezvous`, the live sidecar rendezvous
  // hashing prefers when that is not this one; else "" (this sidecar may act). "" as well when
  // the control master cannot be asked: with every master healthy that only happens while the
  // cluster is down for an unassigned slot, which the finisher assigns without a lease.
  std::string OtherActor(uint16_t slot, bool rendezvous = true);

  const LeaseOptions& options() const { return options_; }

 private:
  // Runs one command on the control master; follows one MOVED; ASK/TRYAGAIN/CLUSTERDOWN/LOADING
  // and transport errors are Unavailable. Other error replies come back as values.
  absl::StatusOr<protocol::RespValue> Control(const std::vector<std::string>& args);
  absl::StatusOr<protocol::RespValue> Eval(std::string_view script,
                                           const std::vector<std::string>& keys,
                                           const std::vector<std::string>& args);

  LeaseOptions options_;
  NodeConnector connector_;
  std::optional<Endpoint> control_;
  std::map<uint16_t, std::string> held_;  // slot -> "<sidecar-id>:<token>" we believe we hold
  std::chrono::steady_clock::time_point last_beat_{};
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_LEASE_H_
