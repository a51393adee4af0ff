// Finisher: repairs one stuck slot by intent (MIGRATION.md C.2 steps 4-8), under a Lease.
//
// Every step is derived from a FRESH ClusterView::Poll taken right before it, never from the
// snapshot the repair was planned on, and every step is idempotent: a crash (or a lost lease) at
// any point leaves a state from which the same intent, resumed from the journal by any sidecar,
// finishes the job. PlanNextStep() is that derivation, as a pure function (observe mode can show
// it; tests check it without a cluster).
//
// The four intents, each converging on "slot owned by `to` in every view, no open marker, keys
// only on `to`":
//   kForward  (S3, S1b, S4a): keys from -> to; IMPORTING on `to` first, then MIGRATING on `from`;
//             COMMIT (SETSLOT NODE to on to, then from, then every other master). The source's
//             copy of a key wins a BUSYKEY: it served every write to it (MIGRATE REPLACE; a
//             differing target copy is stashed first).
//   kDrain    (S2b, rollback of S3): keys from -> to, where `to` already owns the slot. `to` must
//             not be MIGRATING (its RESTORE-ASKING would be answered with ASK, lab-verified), and
//             `from` must be IMPORTING (MIGRATE on a node that neither owns nor opened the slot is
//             answered with MOVED). The owner's copy wins a BUSYKEY: it served every client; the
//             losing copy's DUMP payload is stashed in the control tag before it is deleted.
//   kClose    (S1, S2, stale marker): SETSLOT STABLE wherever a marker is left; no key moves.
//   kAssign   (S8): MULTI; CLUSTER ADDSLOTS; CLUSTER BUMPEPOCH; EXEC on `to`.
//
// Never (MIGRATION.md "Never"): SETSLOT NODE while another node holds keys; SETSLOT NODE <self>
// on a node that is not IMPORTING; DELSLOTS; acting while a master is unreachable or pfail;
// acting on one snapshot; DEBUG or blind REPLACE; two directions at once.
//
// Threading: the watcher's (control) thread only. MIGRATE blocks this thread (and the source
// node) for up to the batch's timeout; never call it from a worker loop.
#ifndef SLOTPILOT_MIGRATION_FINISHER_H_
#define SLOTPILOT_MIGRATION_FINISHER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "migration/cluster_view.h"
#include "migration/lease.h"
#include "migration/redis_client.h"
#include "migration/repair.h"
#include "migration/stuck_detector.h"

namespace slotpilot::migration {

enum class RepairIntentKind { kForward, kDrain, kClose, kAssign };
std::string_view RepairIntentName(RepairIntentKind k);  // "forward", "drain", "close", "assign"
bool ParseRepairIntentName(std::string_view name, RepairIntentKind* out);

// What a repair converges to. `to` is the final owner (a node id); `from` is the node whose keys
// move to `to` (forward, drain) or "" (close, assign).
struct RepairIntent {
  RepairIntentKind kind = RepairIntentKind::kClose;
  std::string from;
  std::string to;
  friend bool operator==(const RepairIntent&, const RepairIntent&) = default;
};

// One step, derived from one snapshot.
struct FinisherStep {
  enum class Kind {
    kSetImporting,  // CLUSTER SETSLOT s IMPORTING <peer> on `node`
    kSetMigrating,  // CLUSTER SETSLOT s MIGRATING <peer> on `node`
    kSetStable,     // CLUSTER SETSLOT s STABLE on `node`
    kMoveKeys,      // one MIGRATE batch from `node` to `peer`
    kCommit,        // CLUSTER SETSLOT s NODE <node> on `node` (importing: bumps its epoch)
    kSetNode,       // CLUSTER SETSLOT s NODE <peer> on `node` (propagation after the commit)
    kAssign,        // MULTI; ADDSLOTS s; BUMPEPOCH; EXEC on `node`
    kWait,          // nothing to do yet (gossip settling); poll again
    kDone,          // converged: verify and release
    kStop,          // the state no longer fits the intent, or would be unsafe: re-observe / alert
  };
  Kind kind = Kind::kStop;
  std::string node;    // node id the command goes to
  std::string peer;    // node id named in the command
  std::string reason;  // why (always set for kWait / kStop)
};
std::string_view FinisherStepName(FinisherStep::Kind k);

// The next step toward `intent` given `snapshot` (which must have counted `slot` on every master).
// Pure; deterministic: the same snapshot always gives the same step.
FinisherStep PlanNextStep(const RepairIntent& intent, const ClusterSnapshot& snapshot,
                          uint16_t slot);

struct FinisherOptions {
  // --- MIGRATE batches --------------------------------------------------------------------------
  int scan_keys = 256;                    // GETKEYSINSLOT count per batch
  int batch_max_keys = 200;               // keys per MIGRATE
  uint64_t batch_max_bytes = 4ull << 20;  // bytes (MEMORY USAGE) per MIGRATE
  uint64_t big_key_bytes = 1ull << 20;    // a key at least this big moves alone
  // MIGRATE's per-I/O timeout: max(min, bytes / throughput), capped; x4 after each IOERR.
  std::chrono::milliseconds migrate_min_timeout{2000};
  std::chrono::milliseconds migrate_max_timeout{30000};
  uint64_t migrate_timeout_bytes_per_sec = 50ull << 20;
  int ioerr_budget = 10;  // consecutive IOERRs, and write/connect retries per intent (journaled)
  std::chrono::milliseconds ioerr_backoff{100};  // doubled per write/connect retry
  // --- Pacing -----------------------------------------------------------------------------------
  std::chrono::milliseconds batch_pause{0};        // after every batch
  uint64_t max_bytes_per_sec = 0;                  // 0 = unlimited
  std::chrono::milliseconds source_rtt_limit{50};  // slower PING: back off 10x the RTT (<= 1 s)
  // --- Preflight (C.2 step 4) -------------------------------------------------------------------
  double memory_factor = 1.3;  // estimated import bytes x this
  uint64_t memory_headroom_bytes = 8ull << 20;
  double eviction_refuse_ratio = 0.9;           // with an eviction policy: refuse above this
  int sample_keys = 128;                        // keys sampled (MEMORY USAGE) to estimate bytes
  uint64_t flag_key_bytes = 64ull << 20;        // keys at least this big are flagged
  uint64_t block_bytes_per_sec = 250ull << 20;  // source block time estimate for one key
  double node_timeout_fraction = 0.25;          // warn when one key blocks longer than this
  bool refuse_blocking_keys = false;            // ... and refuse (e.g. unattended finish mode)
  // --- Conflicts: differing losing copies are stashed (Lease::Stash) up to this budget --------
  uint64_t stash_max_bytes = 64ull << 20;  // losing copies saved per repair, then stop
  // --- Unassigned slot while the cluster is down ------------------------------------------------
  // ASSIGN may run without the lease when the lease itself is unreachable because the cluster is
  // down (full coverage lost), after a per-sidecar stagger of up to this long. See finisher.cc.
  bool leaseless_assign = true;
  std::chrono::milliseconds leaseless_stagger{2000};
  // --- Bounds -----------------------------------------------------------------------------------
  std::chrono::milliseconds settle_timeout{5000};  // views must agree this soon after a step
  std::chrono::milliseconds settle_interval{100};
  std::chrono::milliseconds deadline{std::chrono::minutes(30)};  // whole repair
  int max_steps = 1000000;
  // Test hook, called before every mutating step with its index (0-based) and name; returning
  // false stops the repair right there, as if the process died: no journal, lease kept.
  std::function<bool(int index, const FinisherStep& step)> before_step;
};

// The intent that repairs a slot in `assessment`'s state (MIGRATION.md C.2 table), or
// FailedPrecondition for plans that are not repairs (none, wait, alert). With `rollback`, an
// interrupted or half-closed reshard is drained back to its source instead of forwarded.
absl::StatusOr<RepairIntent> IntentForAssessment(const SlotAssessment& assessment,
                                                 bool rollback = false);

// Result of one repair, in detail (Repair() condenses it into the watcher's RepairOutcome).
struct FinishOutcome {
  enum class Result {
    kDone,         // converged and verified; journal "done"; lease released
    kLeaseBusy,    // another sidecar holds the lease (holder in `reason`)
    kRefused,      // preflight refused (memory, eviction, blocking key, unhealthy target)
    kInterrupted,  // state changed or a node answered MOVED/CLUSTERDOWN/...: re-observe, retry
    kFailed,       // an error that needs an operator (OOM, IOERR budget, unknown state)
    kAborted,      // stopped by the test hook (simulated crash): lease and journal left as is
  };
  Result result = Result::kFailed;
  std::string reason;
  RepairIntent intent;       // the intent run (the journal's, when resumed)
  bool resumed = false;      // taken over from a journal left by an earlier holder
  uint64_t token = 0;        // fencing token
  int steps = 0;             // mutating steps executed
  int64_t keys_before = -1;  // keys in the slot across masters when the repair began
  int64_t keys_after = -1;   // keys on the owner at the end
  uint64_t keys_moved = 0;
  uint64_t bytes_moved = 0;         // MEMORY USAGE of moved keys
  uint64_t failures = 0;            // IOERR and other failed MIGRATEs
  uint64_t keys_replaced = 0;       // forward: target copies overwritten by the source's (BUSYKEY)
  uint64_t conflicts_stashed = 0;   // losing copies that differed; their DUMP is in the stash
  uint64_t duplicates_dropped = 0;  // drain: identical copy deleted on the draining node
  uint64_t evicted_on_target = 0;   // evicted_keys growth on `to` during the repair
  uint64_t throttled = 0;           // back-offs for a slow source
  std::vector<std::string> big_keys;  // flagged keys: "<key> <bytes>"
  std::vector<std::string> step_log;  // "<step> <node> [<peer>]: <result>", in order
  std::vector<std::string> warnings;
  bool ok() const { return result == Result::kDone; }
};
std::string_view FinishResultName(FinishOutcome::Result r);

class Finisher : public SlotRepairer {
 public:
  // `view` and `lease` outlive the finisher; all three are used on the watcher's thread only.
  // `view` may be the watcher's own (Watcher::view()) or a separate one with the same seeds.
  Finisher(ClusterView* view, Lease* lease, FinisherOptions options = {});
  ~Finisher() override;

  // SlotRepairer: re-assesses `slot` on a fresh poll and refuses (kNothingToDo) unless the
  // signature, the parties and completeness still match `plan`; then Run()s the intent of the
  // fresh assessment (kRollback: the drain back to the source, overriding the journal).
  RepairOutcome Repair(uint16_t slot, const SlotAssessment& plan, RepairKind kind) override;

  // Runs `intent` on `slot` to the end (or to a stop). Acquires the slot's lease (kLeaseBusy when
  // another sidecar holds it), resumes the journal's intent when an earlier holder left one
  // unfinished (unless `override_journal`, e.g. an operator's rollback), renews the lease and
  // journals before every mutating step, releases it at the end (kept on kAborted).
  FinishOutcome Run(uint16_t slot, RepairIntent intent, bool override_journal = false);

  // Makes the Run in flight, and every later one, stop before its next step (shutdown: the
  // watcher's Stop waits for a repair in flight). Any thread. A step already running (at most
  // one MIGRATE batch, bounded by its timeout) completes first.
  void Cancel() { cancelled_.store(true); }

  const FinisherOptions& options() const { return options_; }

 private:
  struct Context;
  struct Batch;
  enum class StepStatus { kOk, kStop };

  FinishOutcome RunLoop(Context* ctx);
  bool LeaselessAssign(Context* ctx, const ClusterSnapshot& snap, const absl::Status& lease_error);
  void ResumeJournal(Context* ctx, const ClusterSnapshot& snap, bool override_journal);
  void Baseline(Context* ctx, const ClusterSnapshot& snap);
  bool NoEffect(Context* ctx, const FinisherStep& step);
  absl::StatusOr<ClusterSnapshot> FreshPoll(Context* ctx);
  bool BeginStep(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus Execute(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus SetSlot(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus Commit(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus Assign(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus MoveKeys(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap);
  StepStatus Migrate(Context* ctx, const MasterView& from, const MasterView& to,
                     const std::vector<std::string>& keys, uint64_t bytes, bool replace);
  StepStatus ResolveConflicts(Context* ctx, const MasterView& from, const MasterView& to);
  enum class CopyCheck { kMissing, kIdentical, kStashed, kOverBudget, kError };
  CopyCheck StashLosingCopy(Context* ctx, const MasterView& loser, const MasterView& winner,
                            const std::string& key);
  void AfterMigrateError(Context* ctx, const MasterView& from, const MasterView& to,
                         const std::vector<std::string>& keys, std::string_view error);
  void AfterIoerr(Context* ctx, const MasterView& from, const MasterView& to,
                  const std::vector<std::string>& keys, std::string_view error);
  Batch PickBatch(Context* ctx, const MasterView& from, const std::vector<std::string>& keys,
                  const std::vector<uint64_t>& sizes);
  // How many of `keys` exist on `node` (EXISTS after ASKING: the node may be importing).
  uint64_t CountOnNode(const MasterView& node, const std::vector<std::string>& keys);
  bool Preflight(Context* ctx, const ClusterSnapshot& snap);
  bool CheckTargetMemory(Context* ctx, const MasterView& to, uint64_t import_bytes);
  void CheckBlockingKey(Context* ctx, const MasterView& from, std::string_view key, uint64_t bytes);
  void Pace(Context* ctx, const MasterView& from, uint64_t bytes);
  FinishOutcome Finish(Context* ctx, const ClusterSnapshot& snap);
  FinishOutcome Stop(Context* ctx, FinishOutcome::Result result, std::string reason);
  void AuditStep(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap,
                 std::string_view result);

  // Clients: the view's (short timeouts) for commands, a dedicated one per node for MIGRATE.
  absl::StatusOr<RedisClient*> NodeClient(const MasterView& node);
  absl::StatusOr<RedisClient*> MigrateClient(const MasterView& node,
                                             std::chrono::milliseconds timeout);
  absl::StatusOr<std::vector<uint64_t>> KeySizes(const MasterView& node,
                                                 const std::vector<std::string>& keys);
  std::chrono::milliseconds MigrateCallCap() const;

  ClusterView* view_;
  Lease* lease_;
  FinisherOptions options_;
  std::map<std::string, std::unique_ptr<RedisClient>> migrate_clients_;  // by "host:port"
  std::atomic<bool> cancelled_{false};
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_FINISHER_H_
