// The migration watcher: on its own thread, poll the cluster (ClusterView) -> assess every open
// or suspect slot (AssessSlot) -> judge it over time (StuckDetector) -> act (finish mode, or a
// manual action) through a SlotRepairer -> publish a WatcherStatus snapshot.
//
// Modes: off (no polls; manual actions rejected), observe (report verdicts and the plan that
// would run; never sends a mutating command; manual actions still run), finish (also hands stuck
// slots with a repairable plan to the repairer, one at a time, with a per-slot backoff).
//
// Interval: slow (default 5 s) while nothing is open; fast (default 1 s) while any slot is open
// or suspect, a loop report arrived recently, or an action is queued; each jittered so that many
// sidecars spread their polls. OnLoopEvidence wakes the thread for an early re-check (but never
// more often than min_poll_gap).
//
// Threads: Start/Stop/SetMode/RequestAction/OnLoopEvidence/Status may be called from any thread.
// The ClusterView, the detector and the repairer are used on the watcher's thread only.
#ifndef SLOTPILOT_MIGRATION_WATCHER_H_
#define SLOTPILOT_MIGRATION_WATCHER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "migration/cluster_view.h"
#include "migration/repair.h"
#include "migration/stuck_detector.h"

namespace slotpilot::migration {

enum class WatcherMode { kOff, kObserve, kFinish };
std::string_view WatcherModeName(WatcherMode m);  // "off" / "observe" / "finish"
bool ParseWatcherMode(std::string_view text, WatcherMode* mode);

// One open or suspect slot, as published.
struct SlotStatus {
  uint16_t slot = 0;
  std::string signature;  // SignatureName
  std::string scenario;   // "S3", ... ("" when none)
  std::string verdict;    // VerdictName
  std::string reason;     // the assessment's reason
  std::string why_not_stuck;
  // What runs or ran: "would run: 1) ..." in observe mode, "plan: ..." in finish mode before it
  // acts, "running finish: ..." during a repair, "<kind> <result>: <summary>" after one.
  std::string action;
  std::string plan_kind;              // PlanKindName
  bool repairable = false;            // IsRepairable(plan kind): a finish can run
  std::vector<std::string> plan;      // step texts
  std::vector<std::string> rollback;  // step texts, empty when rollback is not meaningful
  std::string source;                 // "host:port", "" when none
  std::string source_id;
  std::string target;
  std::string target_id;
  int64_t keys_source = -1;
  int64_t keys_target = -1;
  int64_t keys_elsewhere = 0;  // sum over other masters (-1 entries ignored)
  absl::Time since = absl::InfinitePast();
  absl::Time last_progress = absl::InfinitePast();
  double stalled_seconds = 0;
  double stuck_seconds = 0;
  std::string lease_holder;  // a foreign holder, or our id while we repair
  absl::Time last_loop_report = absl::InfinitePast();
  uint32_t repair_generation = 0;
};

// One master's health as the last poll saw it.
struct MasterHealth {
  std::string address;
  std::string id;
  bool reachable = false;
  std::string error;
  bool loading = false;
  std::string cluster_state;  // its CLUSTER INFO cluster_state
  int slots_assigned = 0;
  int slots_ok = 0;
  int slots_pfail = 0;
  int slots_fail = 0;
  uint64_t config_epoch = 0;
  uint64_t current_epoch = 0;
  uint64_t used_memory = 0;
  uint64_t maxmemory = 0;
  std::string maxmemory_policy;
  std::string flags_seen_by_others;  // e.g. "fail?", "" when clean
  double poll_ms = 0;
};

// A node some master flags fail, fail?, handshake or noaddr.
struct FlaggedNode {
  std::string id;
  std::string address;
  std::string flags;    // "fail", "fail?", "handshake", "noaddr" (comma-separated)
  std::string seen_by;  // address of the master whose view says so
};

struct OpenSlotAge {
  uint16_t slot = 0;
  double age_seconds = 0;
  std::string signature;
};

struct WatcherCounters {
  std::map<std::string, uint64_t> verdicts;  // transitions into each verdict, by VerdictName
  uint64_t polls = 0;
  uint64_t poll_failures = 0;
  uint64_t loop_reports = 0;
  uint64_t actions_started = 0;  // repairs handed to the repairer (auto + manual)
  uint64_t actions_succeeded = 0;
  uint64_t actions_failed = 0;
  uint64_t actions_deferred = 0;  // deferred or nothing-to-do
  uint64_t actions_rejected = 0;  // manual requests refused
  uint64_t keys_moved = 0;
  uint64_t bytes_moved = 0;
};

struct WatcherStatus {
  WatcherMode mode = WatcherMode::kObserve;
  absl::Time updated_at = absl::InfinitePast();
  uint64_t poll_count = 0;      // successful polls
  std::string last_poll_error;  // "" when the last poll succeeded
  absl::Duration next_poll_in = absl::ZeroDuration();
  bool cluster_healthy = false;  // ClusterSnapshot::AllMastersHealthy
  std::string unhealthy_reason;
  std::vector<SlotStatus> slots;  // sorted by slot
  size_t slots_omitted = 0;       // beyond WatcherOptions::max_reported_slots
  std::vector<MasterHealth> masters;
  std::vector<ReplicaView> replicas;
  std::vector<FlaggedNode> flagged_nodes;
  std::vector<OpenSlotAge> open_slots;
  WatcherCounters counters;
  // Bumped for a slot each time a repair of it succeeds (the proxy retries requests held on it).
  std::map<uint16_t, uint32_t> repair_generation;
  uint64_t repairs_completed = 0;  // sum of the generations: a cheap "did anything change"

  const SlotStatus* Find(uint16_t slot) const;
};

struct WatcherOptions {
  WatcherMode mode = WatcherMode::kObserve;
  ClusterViewOptions view;
  // stall timeout, settle window, lease_holder, previous_owner, self_id, clock (for the detector).
  StuckDetectorOptions detector;
  absl::Duration slow_interval = absl::Seconds(5);
  absl::Duration fast_interval = absl::Seconds(1);
  double jitter = 0.2;  // each interval is scaled by a uniform factor in [1 - jitter, 1 + jitter]
  // Loop evidence keeps the fast interval this long after the last report.
  absl::Duration fast_after_evidence = absl::Seconds(30);
  // Wake-ups (loop reports, requests) never make polls closer together than this.
  absl::Duration min_poll_gap = absl::Milliseconds(250);
  // After an automatic repair that did not succeed, the slot is not retried for this long
  // (doubling per failure, up to 16x).
  absl::Duration retry_backoff = absl::Seconds(30);
  size_t max_pending_actions = 64;
  // Caps on what one poll publishes and logs: a cluster with thousands of unassigned slots must
  // not produce a multi-megabyte status or thousands of audit lines per poll. Stuck slots are
  // kept first, then the other open or suspect ones, then healthy ones, each by slot number.
  size_t max_reported_slots = 512;
  size_t max_verdict_audits_per_poll = 64;
  // Called on the watcher's thread after each publish (e.g. to hand MigrationState to the
  // workers). Must not block.
  std::function<void(const std::shared_ptr<const WatcherStatus>&)> on_publish;
};

class Watcher {
 public:
  // `repairer` is not owned and must outlive the watcher; nullptr = nothing can act (finish mode
  // and manual actions are then recorded as deferred).
  explicit Watcher(WatcherOptions options, SlotRepairer* repairer = nullptr);
  ~Watcher();  // Stop()
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void Start();
  // Wakes the thread and joins it. Waits for a poll or repair in flight (both bounded).
  void Stop();
  // Runs one iteration (poll, detect, act, publish) on the caller's thread; returns the interval
  // the loop would wait next. For tests and callers that drive the watcher themselves; never
  // while the thread is started.
  absl::Duration RunOnce();

  void SetMode(WatcherMode mode);
  WatcherMode mode() const { return mode_.load(); }
  // Queues a manual finish / rollback of `slot` (runs even in observe mode, at the next
  // iteration, which it wakes). FailedPrecondition when the mode is off or the latest assessment
  // has nothing to run for `kind`; NotFound when the slot is stable in every view; InvalidArgument
  // for a bad slot; ResourceExhausted when the queue is full.
  absl::Status RequestAction(uint16_t slot, RepairKind kind);
  // A redirect loop was seen on `slot`: count its keys next poll and poll soon. Any thread.
  void OnLoopEvidence(uint16_t slot);
  // The latest published status (never null).
  std::shared_ptr<const WatcherStatus> Status() const;

  // The watcher's own ClusterView, for a repairer running inside Repair (watcher thread only).
  ClusterView& view() { return view_; }

 private:
  struct Action {
    uint16_t slot;
    RepairKind kind;
    bool manual;
  };
  struct LastOutcome {
    RepairKind kind;
    RepairOutcome outcome;
    absl::Time at;
  };

  void Loop();
  absl::Status ValidateAction(uint16_t slot, RepairKind kind) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time Now() const;
  absl::Duration Jittered(absl::Duration d);
  std::set<uint16_t> TakeLoopEvidence();
  void Act(const ClusterSnapshot& snapshot, const std::vector<SlotVerdict>& verdicts);
  bool NextAction(const std::vector<SlotVerdict>& verdicts, Action* action);
  void RunRepair(const ClusterSnapshot& snapshot, const SlotAssessment& assessment, Action action);
  void AuditVerdicts(const std::vector<SlotVerdict>& verdicts);
  SlotStatus MakeSlotStatus(const SlotVerdict& v) const;
  void Publish(const ClusterSnapshot* snapshot, const std::vector<SlotVerdict>& verdicts,
               absl::Duration next);
  bool WantFast(const std::vector<SlotVerdict>& verdicts) const;

  const WatcherOptions options_;
  SlotRepairer* const repairer_;
  std::atomic<WatcherMode> mode_;

  // Watcher thread only.
  ClusterView view_;
  StuckDetector detector_;
  std::mt19937 rng_;
  std::map<uint16_t, std::string> last_verdict_;  // "verdict/signature", for transitions
  std::map<uint16_t, LastOutcome> last_outcome_;
  std::map<uint16_t, std::pair<absl::Time, int>> retry_after_;  // auto repairs: when, failures
  absl::Time last_evidence_ = absl::InfinitePast();
  std::string running_;  // slot status action text of the repair in flight, "" when none
  uint16_t running_slot_ = 0;
  WatcherCounters counters_;
  std::map<uint16_t, uint32_t> generation_;
  uint64_t poll_count_ = 0;
  std::string last_poll_error_;
  std::vector<SlotVerdict> last_verdicts_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::set<uint16_t> pending_loops_ ABSL_GUARDED_BY(mu_);
  uint64_t loop_reports_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Action> pending_actions_ ABSL_GUARDED_BY(mu_);
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const WatcherStatus> status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_WATCHER_H_
