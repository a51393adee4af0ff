// Stuck-slot detection, in two layers (MIGRATION.md C.2 steps 1 and 2):
//
//  * AssessSlot: a PURE classifier. It reads one ClusterSnapshot (every master's own view, open
//    markers and key counts) and names the slot's signature, the nodes involved, and the plan
//    that would repair it, as concrete steps. Same snapshot in, same assessment out: two watchers
//    looking at the same state pick the same direction. It never decides that a slot is stuck.
//
//  * StuckDetector: STATEFUL, one per watcher. It remembers each open or suspect slot's signature
//    and key counts across polls and calls a slot stuck only when nothing has moved for
//    `stall_timeout`, every master is healthy, nobody else holds the slot's lease, and (for plans
//    that move keys) the node keys would move from answered the last poll promptly.
//
// Both run on the watcher's thread; nothing here does I/O except the optional callbacks.
#ifndef SLOTPILOT_MIGRATION_STUCK_DETECTOR_H_
#define SLOTPILOT_MIGRATION_STUCK_DETECTOR_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "migration/cluster_view.h"

namespace slotpilot::migration {

// Rows of the C.2 table. Scenario tags (S1, S3, ...) are MIGRATION.md's lab names.
enum class Signature {
  kStable,                       // not open, every view agrees, keys only on the owner
  kInterruptedReshard,           // S3: Mig={A->B}, Imp={B<-A}, every view Own=A
  kHalfOpenSource,               // S1: Mig={A->B}, Imp={}, Keys(B)=0
  kHalfClosedTarget,             // S1b: Mig={A->B}, Imp={}, Keys(B)>0
  kHalfOpenTarget,               // S2: Mig={}, Imp={B<-A}, Keys(B)=0
  kStrayWritesOnTarget,          // S2b: Mig={}, Imp={B<-A}, Keys(B)>0
  kUnclaimedAfterPartialFinish,  // S4a: Imp={B<-A}, Keys(A)=0, Own(A)=B, Own(B)=A
  // Not a row of the C.2 table, but a state a finish leaves behind when it stops between its
  // first and second SETSLOT NODE (seen live): B owns the slot everywhere, A still shows
  // [s->-B] with no keys. The marker has no effect on a non-owner (A.1); closing it is safe.
  kStaleMigratingMarker,
  kGossipSettling,  // S4c: views disagree about the owner, for less than the settle window
  kUnassigned,      // S8: no master claims the slot in its own view
  kUnknown,         // anything else: alert only
};
std::string_view SignatureName(Signature s);  // "interrupted-reshard", ...
std::string_view ScenarioTag(Signature s);    // "S3", ... ("" for stable/unknown)

// What the plan does, in one word.
enum class PlanKind {
  kNone,               // stable: nothing to do
  kForward,            // FORWARD(A->B): re-assert open states, move keys A->B, commit B
  kClose,              // CLOSE: SETSLOT STABLE on one node
  kImportThenForward,  // IMPORTING on B, then FORWARD
  kDrainThenStable,    // DRAIN B->A (B stays importing), then STABLE on B
  kCommit,             // COMMIT(B): SETSLOT NODE B on B, then A, then every other master
  kWait,               // gossip settling: re-check later
  kAssign,             // MULTI; ADDSLOTS; BUMPEPOCH; EXEC on one chosen node
  kAlert,              // unknown: report, never act
};
std::string_view PlanKindName(PlanKind k);  // "forward", "close", ...
// Plans a finisher may run (everything but none / wait / alert).
bool IsRepairable(PlanKind k);
// Plans that MIGRATE keys (forward, import-then-forward, drain).
bool MovesKeys(PlanKind k);

// A master as the assessment names it.
struct NodeRef {
  std::string id;     // node id; "" when there is no such node
  Endpoint endpoint;  // empty host when the id is not a master of the snapshot
  bool empty() const { return id.empty(); }
  bool known() const { return !endpoint.host.empty(); }
  std::string ToString() const;  // "127.0.0.1:7001 (3f2a9c1d)" or "<id> (unknown node)"
};

// One concrete step of a plan. `text` is what observe mode shows; the fields are for a finisher
// that wants to check its own steps against the plan (it must still re-derive from a fresh poll).
struct PlanStep {
  enum class Op {
    kSetSlotImporting,  // CLUSTER SETSLOT s IMPORTING <peer> on `on`
    kSetSlotMigrating,  // CLUSTER SETSLOT s MIGRATING <peer> on `on`
    kSetSlotStable,     // CLUSTER SETSLOT s STABLE on `on`
    kSetSlotNode,       // CLUSTER SETSLOT s NODE <peer> on `on`
    kMoveKeys,          // GETKEYSINSLOT + MIGRATE ... KEYS on `on`, to `peer`, until `on` has none
    kCheckNoKeys,       // COUNTKEYSINSLOT s == 0 on every master but `peer`
    kAssign,            // MULTI; CLUSTER ADDSLOTS s; CLUSTER BUMPEPOCH; EXEC on `on`
    kVerify,            // every master's view says owner `peer`, no open marker, counts add up
    kWait,              // nothing; re-check after the settle window
    kAlert,             // nothing; an operator must look
  };
  Op op = Op::kAlert;
  NodeRef on;
  NodeRef peer;
  std::string text;
};
std::string_view PlanOpName(PlanStep::Op op);

struct SlotAssessment {
  uint16_t slot = 0;
  Signature signature = Signature::kStable;
  PlanKind action = PlanKind::kNone;
  std::string reason;  // why this signature, in words, with the evidence
  // The migration's parties as the markers name them: source = the node the slot was leaving
  // (MIGRATING side, or the IMPORTING node's source), target = the importing / destination node.
  // Unassigned: source empty, target = the node that would get the slot.
  NodeRef source;
  NodeRef target;
  NodeRef intended_owner;    // who owns the slot once `plan` has run ("" for wait / alert)
  int64_t keys_source = -1;  // COUNTKEYSINSLOT; -1 = not counted / unreachable
  int64_t keys_target = -1;
  std::map<std::string, int64_t> keys_elsewhere;  // other masters (by id) with keys > 0 or -1
  uint64_t source_epoch = 0;  // config epochs from their own myself lines (0 = unknown)
  uint64_t target_epoch = 0;
  int64_t source_migrate_calls = -1;  // MasterView::migrate_calls of source / target
  int64_t target_migrate_calls = -1;
  bool complete = false;  // every master reachable and counted for this slot
  std::vector<PlanStep> plan;
  // Meaningful only for an interrupted or half-closed migration (S3, S1b): move the target's keys
  // back, then close both sides (MIGRATION.md: roll back when the target is gone). Empty else.
  std::vector<PlanStep> rollback;

  std::string PlanText() const;      // "1) ... 2) ..." (one line)
  std::string RollbackText() const;  // same for `rollback`, "" when empty
};

struct AssessOptions {
  // The slot's previous owner (a node id or "host:port"), e.g. from the proxy's last good slot
  // map; only used to assign an unassigned slot that no node holds keys for. "" = unknown.
  std::string previous_owner;
  // How long the views have disagreed about this slot's owner (the caller keeps the clock).
  absl::Duration disputed_for = absl::ZeroDuration();
  // Disagreement shorter than this is gossip settling (WAIT); longer is unknown (alert).
  // At least 3 gossip periods: MIGRATION.md measured 1.1-3.4 s for S4c.
  absl::Duration settle_window = absl::Seconds(5);
};

// Classifies `slot` from `snapshot` (MIGRATION.md C.2 table). Pure; never blocks.
SlotAssessment AssessSlot(const ClusterSnapshot& snapshot, uint16_t slot,
                          const AssessOptions& options = {});

// --- Stateful detection -------------------------------------------------------------------------

enum class Verdict {
  kHealthy,       // stable (only reported for slots with a loop report)
  kObserving,     // open or suspect, not moving, not (yet) stuck: see why_not_stuck
  kProgressing,   // keys, epochs or the signature moved within `progress_hold`
  kWaiting,       // gossip settling: nothing to do but wait
  kStuck,         // unchanged for stall_timeout, every gate passed
  kHealthyAgain,  // was open or suspect, now stable (reported for `healthy_again_hold`)
};
std::string_view VerdictName(Verdict v);  // "observing", "healthy-again", ...

// Names for logs and test failure messages.
std::ostream& operator<<(std::ostream& os, Signature s);
std::ostream& operator<<(std::ostream& os, PlanKind k);
std::ostream& operator<<(std::ostream& os, Verdict v);

struct SlotVerdict {
  uint16_t slot = 0;
  Verdict verdict = Verdict::kHealthy;
  SlotAssessment assessment;
  absl::Time since = absl::InfinitePast();            // first poll of this episode
  absl::Time signature_since = absl::InfinitePast();  // current signature first seen
  absl::Time last_progress = absl::InfinitePast();    // last observed movement (or first sight)
  double stalled_seconds = 0;  // since the later of signature_since and last_progress
  double stuck_seconds = 0;    // stalled_seconds beyond stall_timeout, when verdict is stuck
  std::string why_not_stuck;   // for observing / progressing / waiting
  std::string lease_holder;    // foreign lease holder when one was looked up, else ""
  absl::Time last_loop_report = absl::InfinitePast();
};

struct StuckDetectorOptions {
  absl::Duration stall_timeout = absl::Seconds(60);
  absl::Duration settle_window = absl::Seconds(5);
  // A slot is "progressing" for this long after the last movement seen.
  absl::Duration progress_hold = absl::Seconds(15);
  // A slot that became stable is reported as healthy-again for this long, then forgotten.
  absl::Duration healthy_again_hold = absl::Seconds(60);
  // A source whose poll took longer than this may be blocked inside someone's MIGRATE (A.5):
  // key-moving plans are not judged stuck while it is that slow.
  absl::Duration slow_source = absl::Seconds(1);
  std::string self_id;                // our lease holder id: a lease held by anyone else is foreign
  std::function<absl::Time()> clock;  // default absl::Now
  // Holder of the slot's lease ("" = none). Called only for slots that would otherwise be stuck.
  // Values equal to self_id, or starting with self_id + ":", are ours.
  std::function<std::string(uint16_t slot)> lease_holder;
  // Previous owner hint for unassigned slots (node id or "host:port", "" = unknown), e.g. the
  // proxy's last good slot map. When absent or empty, the detector's own memory of the last
  // owner every view agreed on is used.
  std::function<std::string(uint16_t slot)> previous_owner;
};

// Not thread-safe: owned and called by the watcher's thread.
class StuckDetector {
 public:
  explicit StuckDetector(StuckDetectorOptions options);

  // Records a loop report for `slot` (evidence only: it makes the slot tracked and reported, it
  // never makes it stuck). Call before Update; the watcher also asks the view to count its keys.
  void OnLoopEvidence(uint16_t slot);
  // Assesses every open, disputed, unassigned, counted, reported or previously tracked slot and
  // returns their verdicts sorted by slot. Stable slots are returned only as healthy-again (or
  // healthy, when a loop report named them since the last update).
  std::vector<SlotVerdict> Update(const ClusterSnapshot& snapshot);
  // Drops a slot's history (e.g. after a repair), so its next episode starts fresh.
  void Forget(uint16_t slot);
  // The assessment options Update would use for `slot` now (for a manual action between polls).
  AssessOptions AssessOptionsFor(uint16_t slot) const;
  const StuckDetectorOptions& options() const { return options_; }

 private:
  struct History {
    Signature signature = Signature::kStable;
    std::string source_id;
    std::string target_id;
    int64_t keys_source = -1;
    int64_t keys_target = -1;
    uint64_t source_epoch = 0;
    uint64_t target_epoch = 0;
    int64_t source_migrate_calls = -1;
    int64_t target_migrate_calls = -1;
    absl::Time since = absl::InfinitePast();
    absl::Time signature_since = absl::InfinitePast();
    absl::Time last_progress = absl::InfinitePast();
    absl::Time moved_at = absl::InfinitePast();  // movement after first sight
    absl::Time disputed_since = absl::InfinitePast();
    absl::Time healthy_at = absl::InfinitePast();  // became stable (healthy-again episode)
    absl::Time last_loop_report = absl::InfinitePast();
    bool loop_pending = false;
  };

  absl::Time Now() const;
  void RememberOwners(const ClusterSnapshot& snapshot, const std::set<uint16_t>& disputed);
  bool Track(uint16_t slot, History* h, const SlotAssessment& a, absl::Time now);
  SlotVerdict Judge(const ClusterSnapshot& snapshot, const SlotAssessment& a, History* h,
                    absl::Time now);
  bool PassesGates(const ClusterSnapshot& snapshot, const SlotAssessment& a, SlotVerdict* v);

  StuckDetectorOptions options_;
  std::map<uint16_t, History> history_;
  std::set<uint16_t> loop_slots_;  // reported since the last Update
  // Last owner every reachable view agreed on, per slot: index into owner_ids_, -1 unknown.
  std::vector<int16_t> last_owner_;
  std::vector<std::string> owner_ids_;
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_STUCK_DETECTOR_H_
