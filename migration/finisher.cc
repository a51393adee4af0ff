#include "migration/finisher.h"

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "migration/stuck_detector.h"
#include "protocol/errors.h"
#include "protocol/strings.h"
#include "spdlog/spdlog.h"

namespace slotpilot::migration {
namespace {

using Clock = std::chrono::steady_clock;
using protocol::ReplyType;
using protocol::RespValue;
using Kind = FinisherStep::Kind;
using Result = FinishOutcome::Result;

constexpr std::string_view kComponent = "finisher";
constexpr std::string_view kTargetError = "ERR Target instance replied with error: ";
constexpr std::string_view kReplicaSetSlot = "Please use SETSLOT only with masters";

// --- Reading one master's view of one slot ------------------------------------------------------

bool Claims(const MasterView& m, uint16_t slot) { return !m.id.empty() && m.OwnerId(slot) == m.id; }

bool HasMarker(const MasterView& m, uint16_t slot) {
  return m.MigratingTo(slot).has_value() || m.ImportingFrom(slot).has_value();
}

std::string Short(std::string_view id) { return std::string(id.substr(0, 8)); }

std::string Name(const MasterView& m) {
  return StrCat(m.endpoint.ToString(), " (", Short(m.id), ")");
}

FinisherStep Step(Kind kind, std::string node, std::string peer = "", std::string reason = "") {
  return FinisherStep{kind, std::move(node), std::move(peer), std::move(reason)};
}
FinisherStep StopStep(std::string reason) { return Step(Kind::kStop, "", "", std::move(reason)); }
FinisherStep WaitStep(std::string reason) { return Step(Kind::kWait, "", "", std::move(reason)); }

// Keys or open markers on a master that is neither party: not a state this intent knows.
std::optional<FinisherStep> CheckThirdNodes(const ClusterSnapshot& snap, uint16_t slot,
                                            std::string_view a, std::string_view b) {
  for (const MasterView& m : snap.masters) {
    if (m.id == a || m.id == b) continue;
    if (m.KeysIn(slot) > 0) {
      return StopStep(StrCat("third node ", Name(m), " holds ", m.KeysIn(slot), " keys"));
    }
    if (HasMarker(m, slot)) return StopStep(StrCat("third node ", Name(m), " has an open marker"));
  }
  return std::nullopt;
}

// Every view names `owner` and no marker is left (markers were closed by the caller's plan).
FinisherStep PlanAgreement(const ClusterSnapshot& snap, uint16_t slot, std::string_view owner) {
  for (const MasterView& m : snap.masters) {
    if (m.OwnerId(slot) != owner) {
      return WaitStep(StrCat("view of ", Name(m), " says owner '", Short(m.OwnerId(slot)), "'"));
    }
    if (HasMarker(m, slot)) return StopStep(StrCat(Name(m), " still shows an open marker"));
  }
  return Step(Kind::kDone, std::string(owner));
}

// After the commit: tell the source, then every other master, then close leftover markers.
FinisherStep PlanPropagate(const ClusterSnapshot& snap, uint16_t slot, const RepairIntent& in) {
  const MasterView* src = snap.MasterById(in.from);
  if (src != nullptr && (src->OwnerId(slot) != in.to || HasMarker(*src, slot))) {
    return Step(Kind::kSetNode, in.from, in.to);
  }
  for (const MasterView& m : snap.masters) {
    if (m.id != in.to && m.OwnerId(slot) != in.to) return Step(Kind::kSetNode, m.id, in.to);
  }
  for (const MasterView& m : snap.masters) {
    if (!HasMarker(m, slot)) continue;
    if (m.id == in.to) return StopStep("new owner shows an open marker after the commit");
    return Step(Kind::kSetStable, m.id);
  }
  return PlanAgreement(snap, slot, in.to);
}

FinisherStep PlanForward(const RepairIntent& in, const ClusterSnapshot& snap, uint16_t slot) {
  const MasterView* dst = snap.MasterById(in.to);
  if (dst == nullptr) return StopStep("target is not a master of the cluster");
  if (auto stop = CheckThirdNodes(snap, slot, in.from, in.to)) return *stop;
  // The source may have become a replica after losing its last slot: then it holds no keys.
  const MasterView* src = snap.MasterById(in.from);
  const int64_t src_keys = src != nullptr ? src->KeysIn(slot) : 0;
  if (src_keys > 0) {
    if (!Claims(*src, slot)) return StopStep("source holds keys but does not own the slot");
    if (Claims(*dst, slot)) return StopStep("target claims the slot while the source holds keys");
    if (dst->ImportingFrom(slot) != in.from) return Step(Kind::kSetImporting, in.to, in.from);
    if (src->MigratingTo(slot) != in.to) return Step(Kind::kSetMigrating, in.from, in.to);
    return Step(Kind::kMoveKeys, in.from, in.to);
  }
  if (!Claims(*dst, slot)) {
    // COMMIT needs the target IMPORTING (so SETSLOT NODE bumps its epoch) and, while the source
    // still owns the slot, the source MIGRATING (so no new key can land there before the commit).
    if (dst->ImportingFrom(slot) != in.from) return Step(Kind::kSetImporting, in.to, in.from);
    if (src != nullptr && Claims(*src, slot) && src->MigratingTo(slot) != in.to) {
      return Step(Kind::kSetMigrating, in.from, in.to);
    }
    return Step(Kind::kCommit, in.to, in.from);
  }
  return PlanPropagate(snap, slot, in);
}

// Keys from `from` (a non-owner) into the owner `to`. Lab (Redis 7.0.15): a MIGRATING owner
// answers RESTORE-ASKING for a key it lacks with ASK, so MIGRATE fails with "Target instance
// replied with error: ASK"; and a node that neither owns nor opened the slot answers MIGRATE
// itself with MOVED. Hence: STABLE on the owner, IMPORTING on the draining node.
FinisherStep PlanDrain(const RepairIntent& in, const ClusterSnapshot& snap, uint16_t slot) {
  const MasterView* owner = snap.MasterById(in.to);
  if (owner == nullptr || !Claims(*owner, slot)) {
    return StopStep("drain target does not own the slot in its own view");
  }
  const MasterView* src = snap.MasterById(in.from);
  if (src == nullptr) return StopStep("drain source is not a master of the cluster");
  if (auto stop = CheckThirdNodes(snap, slot, in.from, in.to)) return *stop;
  if (owner->MigratingTo(slot)) {
    return Step(Kind::kSetStable, in.to, "", "owner must not be MIGRATING to accept the keys");
  }
  if (src->KeysIn(slot) > 0) {
    if (Claims(*src, slot)) return StopStep("drain source claims the slot");
    if (!src->ImportingFrom(slot)) return Step(Kind::kSetImporting, in.from, in.to);
    return Step(Kind::kMoveKeys, in.from, in.to);
  }
  if (HasMarker(*src, slot)) return Step(Kind::kSetStable, in.from);
  return PlanAgreement(snap, slot, in.to);
}

FinisherStep PlanClose(const RepairIntent& in, const ClusterSnapshot& snap, uint16_t slot) {
  const MasterView* owner = snap.MasterById(in.to);
  if (owner == nullptr || !Claims(*owner, slot)) {
    return StopStep("close: the owner does not claim the slot in its own view");
  }
  for (const MasterView& m : snap.masters) {
    if (m.id != in.to && m.KeysIn(slot) > 0) {
      return StopStep(StrCat(Name(m), " holds ", m.KeysIn(slot), " keys: not a close"));
    }
  }
  for (const MasterView& m : snap.masters) {
    if (HasMarker(m, slot)) return Step(Kind::kSetStable, m.id);
  }
  return PlanAgreement(snap, slot, in.to);
}

FinisherStep PlanAssign(const RepairIntent& in, const ClusterSnapshot& snap, uint16_t slot) {
  const MasterView* node = snap.MasterById(in.to);
  if (node == nullptr) return StopStep("assign: the node is not a master of the cluster");
  bool assigned_somewhere = false;
  for (const MasterView& m : snap.masters) {
    if (m.id != in.to && m.KeysIn(slot) > 0) {
      return StopStep(StrCat(Name(m), " holds ", m.KeysIn(slot), " keys: assign elsewhere"));
    }
    assigned_somewhere |= !m.OwnerId(slot).empty();
  }
  if (!assigned_somewhere) return Step(Kind::kAssign, in.to);
  if (!Claims(*node, slot)) return StopStep("slot is assigned, but not to the intended node");
  if (node->MigratingTo(slot)) return StopStep("the assigned node shows MIGRATING");
  for (const MasterView& m : snap.masters) {
    if (m.id != in.to && HasMarker(m, slot)) return Step(Kind::kSetStable, m.id);
  }
  return PlanAgreement(snap, slot, in.to);
}

// --- Small protocol helpers ---------------------------------------------------------------------

bool IsRedirectOrDown(std::string_view error) {
  switch (protocol::ClassifyError(error)) {
    case protocol::ErrorKind::kMoved:
    case protocol::ErrorKind::kAsk:
    case protocol::ErrorKind::kTryAgain:
    case protocol::ErrorKind::kClusterDown:
    case protocol::ErrorKind::kLoading:
    case protocol::ErrorKind::kMasterDown:
    case protocol::ErrorKind::kReadOnly:
      return true;
    default:
      return false;
  }
}

std::string StatusText(const absl::Status& s) { return std::string(AsStd(s.message())); }

std::string JoinKeys(const std::vector<std::string>& keys, size_t max = 5) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < max; ++i) StrAppend(&out, i ? "," : "", keys[i]);
  if (keys.size() > max) StrAppend(&out, ",...(", keys.size(), ")");
  return out;
}

void SleepFor(std::chrono::milliseconds d) {
  if (d.count() > 0) std::this_thread::sleep_for(d);
}

}  // namespace

// --- Names ---------------------------------------------------------------------------------------

std::string_view RepairIntentName(RepairIntentKind k) {
  switch (k) {
    case RepairIntentKind::kForward:
      return "forward";
    case RepairIntentKind::kDrain:
      return "drain";
    case RepairIntentKind::kClose:
      return "close";
    case RepairIntentKind::kAssign:
      return "assign";
  }
  return "?";
}

bool ParseRepairIntentName(std::string_view name, RepairIntentKind* out) {
  for (RepairIntentKind k : {RepairIntentKind::kForward, RepairIntentKind::kDrain,
                             RepairIntentKind::kClose, RepairIntentKind::kAssign}) {
    if (RepairIntentName(k) == name) {
      *out = k;
      return true;
    }
  }
  return false;
}

std::string_view FinisherStepName(Kind k) {
  switch (k) {
    case Kind::kSetImporting:
      return "set-importing";
    case Kind::kSetMigrating:
      return "set-migrating";
    case Kind::kSetStable:
      return "set-stable";
    case Kind::kMoveKeys:
      return "move-keys";
    case Kind::kCommit:
      return "commit";
    case Kind::kSetNode:
      return "set-node";
    case Kind::kAssign:
      return "assign";
    case Kind::kWait:
      return "wait";
    case Kind::kDone:
      return "done";
    case Kind::kStop:
      return "stop";
  }
  return "?";
}

std::string_view FinishResultName(Result r) {
  switch (r) {
    case Result::kDone:
      return "done";
    case Result::kLeaseBusy:
      return "lease-busy";
    case Result::kRefused:
      return "refused";
    case Result::kInterrupted:
      return "interrupted";
    case Result::kFailed:
      return "failed";
    case Result::kAborted:
      return "aborted";
  }
  return "?";
}

FinisherStep PlanNextStep(const RepairIntent& intent, const ClusterSnapshot& snapshot,
                          uint16_t slot) {
  std::string why;
  if (!snapshot.AllMastersHealthy(&why)) return WaitStep(StrCat("cluster not healthy: ", why));
  for (const MasterView& m : snapshot.masters) {
    if (m.KeysIn(slot) < 0) return WaitStep(StrCat("keys not counted on ", Name(m)));
  }
  switch (intent.kind) {
    case RepairIntentKind::kForward:
      return PlanForward(intent, snapshot, slot);
    case RepairIntentKind::kDrain:
      return PlanDrain(intent, snapshot, slot);
    case RepairIntentKind::kClose:
      return PlanClose(intent, snapshot, slot);
    case RepairIntentKind::kAssign:
      return PlanAssign(intent, snapshot, slot);
  }
  return StopStep("unknown intent");
}

absl::StatusOr<RepairIntent> IntentForAssessment(const SlotAssessment& a, bool rollback) {
  const std::string& owner = a.intended_owner.id;
  const bool reshard = a.action == PlanKind::kForward || a.action == PlanKind::kImportThenForward;
  if (rollback && !reshard) {
    return absl::FailedPreconditionError(
        AsAbsl(StrCat("plan '", PlanKindName(a.action), "' has no rollback")));
  }
  switch (a.action) {
    case PlanKind::kForward:
    case PlanKind::kImportThenForward:
      if (rollback) return RepairIntent{RepairIntentKind::kDrain, a.target.id, a.source.id};
      return RepairIntent{RepairIntentKind::kForward, a.source.id, a.target.id};
    case PlanKind::kCommit:
      return RepairIntent{RepairIntentKind::kForward, a.source.id, a.target.id};
    case PlanKind::kDrainThenStable:
      return RepairIntent{RepairIntentKind::kDrain, a.target.id,
                          owner.empty() ? a.source.id : owner};
    case PlanKind::kClose:
      return RepairIntent{RepairIntentKind::kClose, "", owner.empty() ? a.source.id : owner};
    case PlanKind::kAssign:
      return RepairIntent{RepairIntentKind::kAssign, "", owner.empty() ? a.target.id : owner};
    default:
      return absl::FailedPreconditionError(
          AsAbsl(StrCat("plan '", PlanKindName(a.action), "' is not a repair")));
  }
}

// --- The watcher's seam
// ----------------------------------------------------------------------------

namespace {

RepairOutcome Condense(const FinishOutcome& f) {
  RepairOutcome r;
  r.mutated = f.steps > 0;
  r.keys_moved = static_cast<int64_t>(f.keys_moved);
  r.bytes_moved = static_cast<int64_t>(f.bytes_moved);
  r.steps = f.step_log;
  switch (f.result) {
    case FinishOutcome::Result::kDone:
      r.result = RepairOutcome::Result::kDone;
      break;
    case FinishOutcome::Result::kLeaseBusy:
    case FinishOutcome::Result::kRefused:
      r.result = RepairOutcome::Result::kDeferred;
      break;
    case FinishOutcome::Result::kInterrupted:
      r.result = r.mutated ? RepairOutcome::Result::kFailed : RepairOutcome::Result::kDeferred;
      break;
    default:
      r.result = RepairOutcome::Result::kFailed;
      break;
  }
  if (f.result == FinishOutcome::Result::kLeaseBusy) {
    const std::string_view prefix = "lease held by ";
    r.lease_holder = f.reason.substr(std::min(f.reason.size(), prefix.size()));
  }
  if (!f.ok()) r.error = f.reason;
  r.summary = StrCat(RepairIntentName(f.intent.kind), " ", Short(f.intent.from), "->",
                     Short(f.intent.to), ": ", FinishResultName(f.result), " (", f.reason,
                     ") steps=", f.steps, " moved=", f.keys_moved, " bytes=", f.bytes_moved,
                     " failures=", f.failures, f.resumed ? " resumed" : "",
                     f.warnings.empty() ? "" : StrCat(" warnings=", f.warnings.size()));
  return r;
}

bool SameParties(const SlotAssessment& a, const SlotAssessment& b) {
  return a.signature == b.signature && a.action == b.action && a.source.id == b.source.id &&
         a.target.id == b.target.id && a.intended_owner.id == b.intended_owner.id;
}

}  // namespace

RepairOutcome Finisher::Repair(uint16_t slot, const SlotAssessment& plan, RepairKind kind) {
  RepairOutcome r;
  absl::StatusOr<ClusterSnapshot> snap = view_->Poll({slot});
  if (!snap.ok()) {
    r.result = RepairOutcome::Result::kDeferred;
    r.error = StatusText(snap.status());
    r.summary = StrCat("poll failed: ", r.error);
    return r;
  }
  AssessOptions options;
  options.previous_owner = plan.intended_owner.id;  // only read for an unassigned slot
  const SlotAssessment fresh = AssessSlot(*snap, slot, options);
  if (!fresh.complete) {
    r.result = RepairOutcome::Result::kDeferred;
    r.error = StrCat("incomplete view: ", fresh.reason);
  } else if (!SameParties(fresh, plan)) {
    r.result = RepairOutcome::Result::kNothingToDo;
    r.error = StrCat("state changed since the plan: now ", SignatureName(fresh.signature), " (",
                     fresh.reason, ")");
  }
  if (!r.error.empty()) {
    r.summary = r.error;
    return r;
  }
  absl::StatusOr<RepairIntent> intent = IntentForAssessment(fresh, kind == RepairKind::kRollback);
  if (!intent.ok()) {
    r.result = RepairOutcome::Result::kNothingToDo;
    r.error = StatusText(intent.status());
    r.summary = r.error;
    return r;
  }
  return Condense(Run(slot, *intent, /*override_journal=*/kind == RepairKind::kRollback));
}

// --- The run -------------------------------------------------------------------------------------

struct Finisher::Context {
  uint16_t slot = 0;
  RepairIntent intent;
  FinishOutcome out;
  Clock::time_point started = Clock::now();
  bool lease_held = false;
  bool leaseless = false;  // ASSIGN while the whole cluster is down (see LeaselessAssign)
  bool preflight_done = false;
  bool verify_commit = false;
  int step_index = 0;
  double timeout_multiplier = 1;
  int ioerr_streak = 0;
  int64_t attempts = 0;                    // write/connect retries (journaled)
  std::vector<std::string> replace_keys;   // forward: REPLACE from the source on the next step
  uint64_t replace_duplicates = 0;         // of the REPLACE batch, keys present on the target
  std::vector<std::string> conflict_keys;  // drain: resolve on the next step
  uint64_t stashed_bytes = 0;
  std::optional<Clock::time_point> waiting_since;
  std::optional<uint64_t> evicted_before;
  int64_t node_timeout_ms = -1;
  uint64_t paced_bytes = 0;
  Clock::time_point paced_since = Clock::now();
  // Set by a step that stops the run.
  Result stop_result = Result::kFailed;
  std::string stop_reason;
  std::string note;        // last noteworthy event, journaled with the next step
  FinisherStep last_step;  // for NoEffect
  int repeats = 0;
};

Finisher::Finisher(ClusterView* view, Lease* lease, FinisherOptions options)
    : view_(view), lease_(lease), options_(std::move(options)) {}
Finisher::~Finisher() = default;

std::chrono::milliseconds Finisher::MigrateCallCap() const {
  // The lease must outlive the longest blocking step three times over (C.2 step 3).
  return std::max(std::chrono::milliseconds(1000),
                  std::chrono::duration_cast<std::chrono::milliseconds>(lease_->options().ttl / 3));
}

absl::StatusOr<RedisClient*> Finisher::NodeClient(const MasterView& node) {
  return view_->Client(node.endpoint);
}

absl::StatusOr<RedisClient*> Finisher::MigrateClient(const MasterView& node,
                                                     std::chrono::milliseconds timeout) {
  const std::string key = node.endpoint.ToString();
  auto it = migrate_clients_.find(key);
  if (it == migrate_clients_.end() || !it->second->ok()) {
    RedisClientOptions options = view_->options().client;
    options.command_timeout = timeout;
    auto client = RedisClient::Connect(node.endpoint.host, node.endpoint.port, options);
    if (!client.ok()) return client.status();
    it = migrate_clients_.insert_or_assign(key, *std::move(client)).first;
  }
  it->second->SetCommandTimeout(timeout);
  return it->second.get();
}

FinishOutcome Finisher::Run(uint16_t slot, RepairIntent intent, bool override_journal) {
  Context ctx;
  ctx.slot = slot;
  ctx.intent = intent;
  ctx.out.intent = intent;
  if (slot == Lease::ControlSlot()) {
    return Stop(&ctx, Result::kRefused, "refusing to act on the control slot");
  }
  absl::StatusOr<ClusterSnapshot> snap = view_->Poll({slot});
  if (!snap.ok()) return Stop(&ctx, Result::kInterrupted, StatusText(snap.status()));
  (void)lease_->UpdateView(*snap);  // else keep the last known control master
  absl::StatusOr<bool> got = lease_->Acquire(slot);
  if (!got.ok()) {
    if (!LeaselessAssign(&ctx, *snap, got.status())) {
      return Stop(&ctx, Result::kInterrupted, StrCat("lease: ", StatusText(got.status())));
    }
  } else if (!*got) {
    auto holder = lease_->Holder(slot);
    std::string who = holder.ok() && holder->has_value() ? (*holder)->sidecar_id : "someone";
    return Stop(&ctx, Result::kLeaseBusy, StrCat("lease held by ", who));
  } else {
    ctx.lease_held = true;
    ctx.out.token = lease_->token(slot).value_or(0);
    ResumeJournal(&ctx, *snap, override_journal);
  }
  Baseline(&ctx, *snap);
  return RunLoop(&ctx);
}

// Resumes the intent an earlier holder journaled and did not finish: the same direction, never a
// flip, unless the operator overrides it or it no longer fits the cluster at all.
void Finisher::ResumeJournal(Context* ctx, const ClusterSnapshot& snap, bool override_journal) {
  absl::StatusOr<std::optional<Journal>> journal = lease_->ReadJournal(ctx->slot);
  if (!journal.ok() || !journal->has_value() || (*journal)->done() || override_journal) return;
  const Journal& j = **journal;
  RepairIntent previous;
  previous.from = j.source;
  previous.to = j.target;
  if (!ParseRepairIntentName(j.action, &previous.kind)) return;
  if (PlanNextStep(previous, snap, ctx->slot).kind == Kind::kStop) return;
  if (!(previous == ctx->intent)) {
    spdlog::warn(
        "migration slot={} resuming journal intent {} {}->{} (token {} by {}, step {}) "
        "instead of {} {}->{}",
        ctx->slot, j.action, Short(j.source), Short(j.target), j.token, j.holder, j.step,
        RepairIntentName(ctx->intent.kind), Short(ctx->intent.from), Short(ctx->intent.to));
  }
  ctx->intent = previous;
  ctx->out.intent = previous;
  ctx->out.resumed = j.holder != lease_->options().sidecar_id || j.token != ctx->out.token;
  ctx->attempts = j.attempts;
  ctx->out.keys_before = j.keys_before;
}

// What verification compares against: the slot's key total and the new owner's evictions.
void Finisher::Baseline(Context* ctx, const ClusterSnapshot& snap) {
  if (ctx->out.keys_before < 0) {
    int64_t total = 0;
    for (const MasterView& m : snap.masters) total += std::max<int64_t>(0, m.KeysIn(ctx->slot));
    ctx->out.keys_before = total;
  }
  const MasterView* to = snap.MasterById(ctx->intent.to);
  if (to == nullptr) return;
  auto client = NodeClient(*to);
  auto stats = client.ok() ? (*client)->Command({"INFO", "stats"})
                           : absl::StatusOr<RespValue>(client.status());
  uint64_t evicted = 0;
  if (stats.ok() && ParseInt(InfoField(stats->str, "evicted_keys"), &evicted)) {
    ctx->evicted_before = evicted;
  }
}

// An unassigned slot with cluster-require-full-coverage (the default) takes the whole cluster
// down: every key command, the lease's included, gets CLUSTERDOWN (lab: S8 tests). The lease can
// then never be taken, and the slot never assigned. So ASSIGN alone may run without it, when
// every view leaves the slot unassigned and the control master answered CLUSTERDOWN: the target
// is the node holding the keys (or the proxies' previous owner), the same for every sidecar, and
// ADDSLOTS on an already-claimed slot fails, so a second sidecar's ASSIGN turns into a no-op. A
// per-sidecar stagger, followed by a fresh poll, makes two simultaneous ASSIGNs unlikely.
bool Finisher::LeaselessAssign(Context* ctx, const ClusterSnapshot& snap,
                               const absl::Status& lease_error) {
  if (!options_.leaseless_assign || ctx->intent.kind != RepairIntentKind::kAssign) return false;
  if (StatusText(lease_error).find("CLUSTERDOWN") == std::string::npos) return false;
  if (!snap.AllMastersHealthy()) return false;
  for (const MasterView& m : snap.masters) {
    if (!m.OwnerId(ctx->slot).empty()) return false;
  }
  uint64_t h = 1469598103934665603ull;
  for (char c : StrCat(lease_->options().sidecar_id, "/", ctx->slot)) {
    h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  }
  const auto stagger = options_.leaseless_stagger.count() > 0
                           ? std::chrono::milliseconds(h % options_.leaseless_stagger.count())
                           : std::chrono::milliseconds(0);
  spdlog::warn(
      "migration slot={} cluster is down (lease unavailable: {}); assigning to {} without "
      "a lease after {} ms",
      ctx->slot, StatusText(lease_error), Short(ctx->intent.to), stagger.count());
  ctx->leaseless = true;
  ctx->out.warnings.push_back("assigned without a lease: the cluster was down");
  SleepFor(stagger);
  return true;
}

FinishOutcome Finisher::RunLoop(Context* ctx) {
  for (;;) {
    if (cancelled_.load()) return Stop(ctx, Result::kInterrupted, "cancelled (shutting down)");
    if (Clock::now() - ctx->started > options_.deadline) {
      return Stop(ctx, Result::kFailed, "repair deadline exceeded");
    }
    if (ctx->out.steps >= options_.max_steps) return Stop(ctx, Result::kFailed, "step limit");
    absl::StatusOr<ClusterSnapshot> snap = FreshPoll(ctx);
    if (!snap.ok()) {
      const bool bad_commit = snap.status().code() == absl::StatusCode::kInternal;
      return Stop(ctx, bad_commit ? Result::kFailed : Result::kInterrupted,
                  StatusText(snap.status()));
    }
    const FinisherStep step = PlanNextStep(ctx->intent, *snap, ctx->slot);
    if (step.kind == Kind::kDone) return Finish(ctx, *snap);
    if (step.kind == Kind::kStop) {
      // Before any step the state simply does not fit the intent (re-observe); after, an alert.
      return Stop(ctx, ctx->out.steps == 0 ? Result::kInterrupted : Result::kFailed, step.reason);
    }
    if (step.kind == Kind::kWait) {
      if (!ctx->waiting_since) ctx->waiting_since = Clock::now();
      if (Clock::now() - *ctx->waiting_since > options_.settle_timeout) {
        return Stop(ctx, Result::kInterrupted, StrCat("did not settle: ", step.reason));
      }
      SleepFor(options_.settle_interval);
      continue;
    }
    ctx->waiting_since.reset();
    if (!ctx->preflight_done) {
      if (!Preflight(ctx, *snap)) return Stop(ctx, ctx->stop_result, ctx->stop_reason);
      continue;  // the preflight took time: poll again before the first mutating step
    }
    if (NoEffect(ctx, step)) {
      return Stop(
          ctx, Result::kFailed,
          StrCat(FinisherStepName(step.kind), " on ", Short(step.node), " keeps having no effect"));
    }
    if (!BeginStep(ctx, step, *snap)) return Stop(ctx, ctx->stop_result, ctx->stop_reason);
    if (Execute(ctx, step, *snap) == StepStatus::kStop) {
      return Stop(ctx, ctx->stop_result, ctx->stop_reason);
    }
  }
}

// The same SETSLOT / commit / assign planned again and again means it changes nothing (a view
// that will not move): stop instead of looping until the deadline. Moves repeat by design.
bool Finisher::NoEffect(Context* ctx, const FinisherStep& step) {
  if (step.kind == Kind::kMoveKeys) {
    ctx->repeats = 0;
    return false;
  }
  const bool same = step.kind == ctx->last_step.kind && step.node == ctx->last_step.node &&
                    step.peer == ctx->last_step.peer;
  ctx->repeats = same ? ctx->repeats + 1 : 0;
  ctx->last_step = step;
  return ctx->repeats >= 3;
}

absl::StatusOr<ClusterSnapshot> Finisher::FreshPoll(Context* ctx) {
  absl::StatusOr<ClusterSnapshot> snap = view_->Poll({ctx->slot});
  if (!snap.ok()) return snap;
  (void)lease_->UpdateView(*snap);
  if (ctx->verify_commit) {
    // C.2 step 6.1: the new owner claims the slot, holds the highest config epoch, no marker left.
    ctx->verify_commit = false;
    const MasterView* dst = snap->MasterById(ctx->intent.to);
    uint64_t max_other = 0;
    for (const MasterView& m : snap->masters) {
      if (m.id != ctx->intent.to) max_other = std::max(max_other, m.config_epoch);
    }
    const bool owns = dst != nullptr && Claims(*dst, ctx->slot);
    const bool epoch_max = dst != nullptr && dst->config_epoch > max_other;
    const bool clean = dst != nullptr && !HasMarker(*dst, ctx->slot);
    Audit(kComponent, "step",
          {{"slot", ctx->slot},
           {"step", "commit-verify"},
           {"node", Short(ctx->intent.to)},
           {"owns", owns},
           {"epoch", dst ? dst->config_epoch : 0},
           {"max_other_epoch", max_other},
           {"marker_left", !clean},
           {"token", ctx->out.token}});
    if (!owns || !clean) {
      return absl::InternalError("commit did not take effect on the new owner");
    }
    if (!epoch_max) ctx->out.warnings.push_back("new owner's config epoch is not the maximum");
  }
  return snap;
}

bool Finisher::BeginStep(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap) {
  if (options_.before_step && !options_.before_step(ctx->step_index, step)) {
    ctx->stop_result = Result::kAborted;
    ctx->stop_reason = StrCat("stopped by the test hook before step ", ctx->step_index, " (",
                              FinisherStepName(step.kind), ")");
    return false;
  }
  ++ctx->step_index;
  if (ctx->leaseless) return true;
  absl::Status renewed = lease_->Renew(ctx->slot);
  Journal j;
  j.step = std::string(FinisherStepName(step.kind));
  j.action = std::string(RepairIntentName(ctx->intent.kind));
  j.source = ctx->intent.from;
  j.target = ctx->intent.to;
  j.attempts = ctx->attempts;
  j.keys_before = ctx->out.keys_before;
  j.note = ctx->note;
  if (renewed.ok()) renewed = lease_->WriteJournal(ctx->slot, j);
  if (!renewed.ok()) {
    ctx->lease_held = lease_->token(ctx->slot).has_value();
    ctx->stop_result = ctx->lease_held ? Result::kInterrupted : Result::kFailed;
    ctx->stop_reason = StrCat("lease: ", StatusText(renewed));
    return false;
  }
  return true;
}

Finisher::StepStatus Finisher::Execute(Context* ctx, const FinisherStep& step,
                                       const ClusterSnapshot& snap) {
  ++ctx->out.steps;
  switch (step.kind) {
    case Kind::kCommit:
      return Commit(ctx, step, snap);
    case Kind::kAssign:
      return Assign(ctx, step, snap);
    case Kind::kMoveKeys:
      return MoveKeys(ctx, step, snap);
    default:
      return SetSlot(ctx, step, snap);
  }
}

Finisher::StepStatus Finisher::SetSlot(Context* ctx, const FinisherStep& step,
                                       const ClusterSnapshot& snap) {
  const MasterView* node = snap.MasterById(step.node);
  auto client =
      node ? NodeClient(*node) : absl::StatusOr<RedisClient*>(absl::NotFoundError("node"));
  auto fail = [&](Result r, std::string why) {
    ctx->stop_result = r;
    ctx->stop_reason = StrCat(FinisherStepName(step.kind), " on ", Short(step.node), ": ", why);
    AuditStep(ctx, step, snap, ctx->stop_reason);
    return StepStatus::kStop;
  };
  if (!client.ok()) return fail(Result::kInterrupted, StatusText(client.status()));
  const std::string slot = std::to_string(ctx->slot);
  if (step.kind == Kind::kSetStable && !Claims(*node, ctx->slot)) {
    // Closing a non-owner: keys left there would become unreachable. Re-check right before.
    auto n = (*client)->Command({"CLUSTER", "COUNTKEYSINSLOT", slot});
    if (!n.ok() || n->type != ReplyType::kInteger || n->integer != 0) {
      return fail(Result::kInterrupted, "keys appeared on a non-owner before STABLE");
    }
  }
  std::vector<std::string> args = {"CLUSTER", "SETSLOT", slot};
  switch (step.kind) {
    case Kind::kSetImporting:
      args.insert(args.end(), {"IMPORTING", step.peer});
      break;
    case Kind::kSetMigrating:
      args.insert(args.end(), {"MIGRATING", step.peer});
      break;
    case Kind::kSetNode:
      args.insert(args.end(), {"NODE", step.peer});
      break;
    default:
      args.push_back("STABLE");
      break;
  }
  std::vector<std::string_view> views(args.begin(), args.end());
  auto reply = (*client)->Command(absl::MakeConstSpan(views));
  if (!reply.ok()) return fail(Result::kInterrupted, StatusText(reply.status()));
  if (reply->is_error()) {
    // The source may have turned into a replica of the new owner after losing its last slot.
    const bool tolerated =
        step.kind == Kind::kSetNode && reply->str.find(kReplicaSetSlot) != std::string::npos;
    if (!tolerated) return fail(Result::kInterrupted, reply->str);
  }
  AuditStep(ctx, step, snap, reply->is_error() ? reply->str : "ok");
  return StepStatus::kOk;
}

Finisher::StepStatus Finisher::Commit(Context* ctx, const FinisherStep& step,
                                      const ClusterSnapshot& snap) {
  const MasterView* dst = snap.MasterById(step.node);
  auto fail = [&](Result r, std::string why) {
    ctx->stop_result = r;
    ctx->stop_reason = StrCat("commit: ", why);
    AuditStep(ctx, step, snap, ctx->stop_reason);
    return StepStatus::kStop;
  };
  if (dst == nullptr || dst->ImportingFrom(ctx->slot) != step.peer) {
    return fail(Result::kInterrupted, "destination is not IMPORTING from the source");
  }
  const std::string slot = std::to_string(ctx->slot);
  // Right before SETSLOT NODE: no key on any master but the destination (Never: S4b).
  for (const MasterView& m : snap.masters) {
    if (m.id == dst->id) continue;
    auto client = NodeClient(m);
    auto n = client.ok() ? (*client)->Command({"CLUSTER", "COUNTKEYSINSLOT", slot})
                         : absl::StatusOr<RespValue>(client.status());
    if (!n.ok() || n->type != ReplyType::kInteger || n->integer != 0) {
      return fail(Result::kInterrupted, StrCat(Name(m), " still holds keys (or did not answer)"));
    }
  }
  auto client = NodeClient(*dst);
  auto reply = client.ok() ? (*client)->Command({"CLUSTER", "SETSLOT", slot, "NODE", dst->id})
                           : absl::StatusOr<RespValue>(client.status());
  if (!reply.ok()) return fail(Result::kInterrupted, StatusText(reply.status()));
  if (reply->is_error()) return fail(Result::kInterrupted, reply->str);
  ctx->verify_commit = true;
  AuditStep(ctx, step, snap, "ok");
  return StepStatus::kOk;
}

Finisher::StepStatus Finisher::Assign(Context* ctx, const FinisherStep& step,
                                      const ClusterSnapshot& snap) {
  const MasterView* node = snap.MasterById(step.node);
  auto client =
      node ? NodeClient(*node) : absl::StatusOr<RedisClient*>(absl::NotFoundError("node"));
  const std::string slot = std::to_string(ctx->slot);
  // ADDSLOTS and BUMPEPOCH in one transaction, never DELSLOTS (C.2 step 8).
  auto replies =
      client.ok()
          ? (*client)->Pipeline(
                {{"MULTI"}, {"CLUSTER", "ADDSLOTS", slot}, {"CLUSTER", "BUMPEPOCH"}, {"EXEC"}})
          : absl::StatusOr<std::vector<RespValue>>(client.status());
  std::string why;
  if (!replies.ok()) {
    why = StatusText(replies.status());
  } else if (!replies->back().is_array()) {
    why = StrCat("EXEC: ", protocol::DebugString(replies->back()));
  } else {
    for (const RespValue& r : replies->back().elements) {
      if (r.is_error()) why = r.str;
    }
  }
  if (why.find("already busy") != std::string::npos) {
    // Claimed meanwhile (another sidecar's lease-less ASSIGN): the next poll decides.
    AuditStep(ctx, step, snap, why);
    return StepStatus::kOk;
  }
  if (!why.empty()) {
    ctx->stop_result = Result::kInterrupted;
    ctx->stop_reason = StrCat("assign on ", Short(step.node), ": ", why);
    AuditStep(ctx, step, snap, ctx->stop_reason);
    return StepStatus::kStop;
  }
  AuditStep(ctx, step, snap, StrCat("ok ", replies->back().elements.back().str));
  return StepStatus::kOk;
}

// --- Moving keys ---------------------------------------------------------------------------------

absl::StatusOr<std::vector<uint64_t>> Finisher::KeySizes(const MasterView& node,
                                                         const std::vector<std::string>& keys) {
  auto client = NodeClient(node);
  if (!client.ok()) return client.status();
  std::vector<std::vector<std::string>> commands;
  for (const std::string& k : keys) {
    commands.push_back({"ASKING"});  // the draining node is IMPORTING, not the owner
    commands.push_back({"MEMORY", "USAGE", k, "SAMPLES", "0"});
  }
  auto replies = (*client)->Pipeline(commands);
  if (!replies.ok()) return replies.status();
  std::vector<uint64_t> sizes;
  for (size_t i = 0; i < keys.size(); ++i) {
    const RespValue& r = (*replies)[2 * i + 1];
    sizes.push_back(r.type == ReplyType::kInteger && r.integer > 0 ? r.integer : 0);
  }
  return sizes;
}

struct Finisher::Batch {
  std::vector<std::string> keys;
  uint64_t bytes = 0;
};

// One batch: keys still present on the source, bounded by bytes and count; a big key alone.
Finisher::Batch Finisher::PickBatch(Context* ctx, const MasterView& from,
                                    const std::vector<std::string>& keys,
                                    const std::vector<uint64_t>& sizes) {
  Batch batch;
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint64_t size = sizes[i];
    if (size == 0) continue;  // gone (deleted, expired or already moved)
    const bool big = size >= options_.big_key_bytes;
    if (!batch.keys.empty() && (big || batch.bytes + size > options_.batch_max_bytes ||
                                static_cast<int>(batch.keys.size()) >= options_.batch_max_keys)) {
      break;
    }
    if (big) CheckBlockingKey(ctx, from, keys[i], size);
    if (!ctx->stop_reason.empty()) return Batch{};
    batch.keys.push_back(keys[i]);
    batch.bytes += size;
    if (big) break;
  }
  return batch;
}

uint64_t Finisher::CountOnNode(const MasterView& node, const std::vector<std::string>& keys) {
  uint64_t n = 0;
  auto client = NodeClient(node);
  for (const std::string& k : keys) {
    auto r = client.ok() ? (*client)->Pipeline({{"ASKING"}, {"EXISTS", k}})
                         : absl::StatusOr<std::vector<RespValue>>(client.status());
    if (r.ok() && (*r)[1].integer == 1) ++n;
  }
  return n;
}

Finisher::StepStatus Finisher::MoveKeys(Context* ctx, const FinisherStep& step,
                                        const ClusterSnapshot& snap) {
  const MasterView* from = snap.MasterById(step.node);
  const MasterView* to = snap.MasterById(step.peer);
  auto stop = [&](std::string why) {
    ctx->stop_result = Result::kInterrupted;
    ctx->stop_reason = StrCat("move: ", why);
    return StepStatus::kStop;
  };
  if (from == nullptr || to == nullptr) return stop("a party is not a master");
  if (!ctx->conflict_keys.empty()) return ResolveConflicts(ctx, *from, *to);
  // Keys that hit BUSYKEY (or an IOERR while reading) last time go first, with REPLACE.
  const bool replace = !ctx->replace_keys.empty();
  std::vector<std::string> keys = std::move(ctx->replace_keys);
  ctx->replace_keys.clear();
  if (!replace) {
    auto client = NodeClient(*from);
    auto listed = client.ok()
                      ? (*client)->Command({"CLUSTER", "GETKEYSINSLOT", std::to_string(ctx->slot),
                                            std::to_string(options_.scan_keys)})
                      : absl::StatusOr<RespValue>(client.status());
    if (!listed.ok() || !listed->is_array()) return stop("GETKEYSINSLOT failed");
    for (const RespValue& k : listed->elements) keys.push_back(k.str);
  }
  auto sizes = KeySizes(*from, keys);
  if (!sizes.ok()) return stop(StrCat("MEMORY USAGE: ", StatusText(sizes.status())));
  const Batch batch = PickBatch(ctx, *from, keys, *sizes);
  if (!ctx->stop_reason.empty()) return StepStatus::kStop;
  if (batch.keys.empty()) {
    AuditStep(ctx, step, snap, replace ? "replace: no key left on the source" : "no key to move");
    return StepStatus::kOk;
  }
  // MIGRATE REPLACE overwrites the target's copies: count them, and stash those that differ.
  ctx->replace_duplicates = 0;
  for (const std::string& k : replace ? batch.keys : std::vector<std::string>()) {
    const CopyCheck check = StashLosingCopy(ctx, *to, *from, k);
    ctx->replace_duplicates += check == CopyCheck::kIdentical || check == CopyCheck::kStashed;
    if (check == CopyCheck::kOverBudget) {
      ctx->out.warnings.push_back(StrCat("key ", k,
                                         ": stale target copy replaced, not stashed "
                                         "(stash budget spent)"));
    }
  }
  const StepStatus status = Migrate(ctx, *from, *to, batch.keys, batch.bytes, replace);
  AuditStep(ctx, step, snap,
            StrCat(replace ? "replace " : "", "batch=", batch.keys.size(), " bytes=", batch.bytes,
                   " keys=", JoinKeys(batch.keys), status == StepStatus::kOk ? " " : " stop: ",
                   status == StepStatus::kOk ? ctx->note : ctx->stop_reason));
  return status;
}

Finisher::StepStatus Finisher::Migrate(Context* ctx, const MasterView& from, const MasterView& to,
                                       const std::vector<std::string>& keys, uint64_t bytes,
                                       bool replace) {
  using std::chrono::milliseconds;
  const milliseconds cap = std::min(options_.migrate_max_timeout, MigrateCallCap());
  const int64_t derived = std::max<int64_t>(
      options_.migrate_min_timeout.count(),
      static_cast<int64_t>(bytes * 1000 /
                           std::max<uint64_t>(1, options_.migrate_timeout_bytes_per_sec)));
  const milliseconds timeout(std::clamp<int64_t>(
      static_cast<int64_t>(static_cast<double>(derived) * ctx->timeout_multiplier), 1,
      cap.count()));
  // The whole call: a few I/O timeouts plus the payload at a pessimistic 10 MB/s.
  const milliseconds call(std::min<int64_t>(
      MigrateCallCap().count(), timeout.count() * 3 + static_cast<int64_t>(bytes / 10000) + 1000));
  auto client = MigrateClient(from, call);
  if (!client.ok()) {
    ctx->stop_result = Result::kInterrupted;
    ctx->stop_reason = StatusText(client.status());
    return StepStatus::kStop;
  }
  std::vector<std::string> args = {"MIGRATE",
                                   to.endpoint.host,
                                   std::to_string(to.endpoint.port),
                                   "",
                                   "0",
                                   std::to_string(timeout.count())};
  if (replace) args.push_back("REPLACE");
  // The source logs in to the target with our credentials (AUTH / AUTH2, Redis >= 6).
  const RedisClientOptions& auth = view_->options().client;
  if (!auth.password.empty() && auth.username.empty()) {
    args.insert(args.end(), {"AUTH", auth.password});
  } else if (!auth.password.empty()) {
    args.insert(args.end(), {"AUTH2", auth.username, auth.password});
  }
  args.push_back("KEYS");
  args.insert(args.end(), keys.begin(), keys.end());
  std::vector<std::string_view> views(args.begin(), args.end());
  ctx->note.clear();
  auto reply = (*client)->Command(absl::MakeConstSpan(views));
  if (!reply.ok()) {
    // Our own call timed out: the outcome is as unknown as an IOERR while reading.
    AfterMigrateError(ctx, from, to, keys,
                      StrCat("IOERR reading (client: ", StatusText(reply.status()), ")"));
    return ctx->stop_reason.empty() ? StepStatus::kOk : StepStatus::kStop;
  }
  if (!reply->is_error()) {
    ctx->ioerr_streak = 0;
    if (reply->str != "NOKEY") {
      ctx->out.keys_moved += keys.size();
      ctx->out.bytes_moved += bytes;
      if (replace) ctx->out.keys_replaced += ctx->replace_duplicates;
    }
    ctx->note = StrCat("MIGRATE ", reply->str, " timeout_ms=", timeout.count());
    Pace(ctx, from, bytes);
    return StepStatus::kOk;
  }
  AfterMigrateError(ctx, from, to, keys, reply->str);
  return ctx->stop_reason.empty() ? StepStatus::kOk : StepStatus::kStop;
}

// C.2 step 5's reply table.
void Finisher::AfterMigrateError(Context* ctx, const MasterView& from, const MasterView& to,
                                 const std::vector<std::string>& keys, std::string_view error) {
  ctx->note = std::string(error);
  if (error.substr(0, 5) == "IOERR") return AfterIoerr(ctx, from, to, keys, error);
  const bool forward = ctx->intent.kind == RepairIntentKind::kForward;
  const bool from_target = error.substr(0, kTargetError.size()) == kTargetError;
  const std::string_view reply = from_target ? error.substr(kTargetError.size()) : error;
  if (from_target && protocol::ClassifyError(reply) == protocol::ErrorKind::kBusyKey) {
    // Some of the batch may have moved already (KEYS form); the rest is on both sides. Forward:
    // the source's copy wins (REPLACE). Drain: the owner's copy wins (ResolveConflicts).
    (forward ? ctx->replace_keys : ctx->conflict_keys) = keys;
    return;
  }
  ++ctx->out.failures;
  const bool oom = from_target && reply.substr(0, 3) == "OOM";
  // MOVED / ASK / CLUSTERDOWN / LOADING / READONLY / TRYAGAIN: stop the step and re-observe.
  ctx->stop_result = !oom && IsRedirectOrDown(reply) ? Result::kInterrupted : Result::kFailed;
  ctx->stop_reason = StrCat(
      oom ? "target out of memory; the move may be partial; no commit: " : "MIGRATE: ", error);
}

void Finisher::AfterIoerr(Context* ctx, const MasterView& from, const MasterView& to,
                          const std::vector<std::string>& keys, std::string_view error) {
  ++ctx->out.failures;
  if (++ctx->ioerr_streak > options_.ioerr_budget) {
    ctx->stop_result = Result::kFailed;
    ctx->stop_reason = StrCat("IOERR budget exhausted: ", error);
    return;
  }
  ctx->timeout_multiplier *= 4;  // adapt: the next batch gets a longer per-I/O timeout
  if (error.find("reading") == std::string_view::npos) {
    // Writing or connecting: nothing was applied on the target. Retry with backoff; the count
    // is journaled, so a successor continues it instead of starting a fresh budget.
    if (++ctx->attempts > options_.ioerr_budget) {
      ctx->stop_result = Result::kFailed;
      ctx->stop_reason =
          StrCat("retry budget (", ctx->attempts - 1, " journaled) exhausted: ", error);
      return;
    }
    SleepFor(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(5000),
        options_.ioerr_backoff * (1 << std::min<int64_t>(ctx->attempts - 1, 10))));
    return;
  }
  // Reading: the outcome is unknown. Look at both sides before the next step; a key on both is
  // handled like BUSYKEY on the next round.
  const bool forward = ctx->intent.kind == RepairIntentKind::kForward;
  int both = 0, only_src = 0, only_dst = 0;
  for (const std::string& k : keys) {
    const bool on_src = CountOnNode(from, {k}) == 1;
    const bool on_dst = CountOnNode(to, {k}) == 1;
    if (on_src && on_dst) (forward ? ctx->replace_keys : ctx->conflict_keys).push_back(k);
    both += on_src && on_dst;
    only_src += on_src && !on_dst;
    only_dst += !on_src && on_dst;
  }
  ctx->note =
      StrCat(error, " (both=", both, " only_source=", only_src, " only_target=", only_dst, ")");
}

// A key present on both sides: compares the copies (DUMP, after ASKING: either node may be the
// importing one) and stashes the losing copy's payload when they differ (DESIGN: never destroy a
// differing value silently). Same payload: a plain duplicate.
Finisher::CopyCheck Finisher::StashLosingCopy(Context* ctx, const MasterView& loser,
                                              const MasterView& winner, const std::string& key) {
  auto lc = NodeClient(loser);
  if (!lc.ok()) return CopyCheck::kError;
  auto lose = (*lc)->Pipeline({{"ASKING"}, {"DUMP", key}});
  auto wc = NodeClient(winner);
  if (!wc.ok() || !lose.ok()) return CopyCheck::kError;
  auto win = (*wc)->Pipeline({{"ASKING"}, {"DUMP", key}});
  if (!win.ok()) return CopyCheck::kError;
  const RespValue& lost = (*lose)[1];
  if (lost.type != ReplyType::kBulk || (*win)[1].type != ReplyType::kBulk)
    return CopyCheck::kMissing;
  if (lost.str == (*win)[1].str) return CopyCheck::kIdentical;
  if (ctx->stashed_bytes + lost.str.size() > options_.stash_max_bytes)
    return CopyCheck::kOverBudget;
  auto stashed = lease_->Stash(ctx->slot, key, lost.str);
  if (!stashed.ok()) return CopyCheck::kError;
  ctx->stashed_bytes += lost.str.size();
  ++ctx->out.conflicts_stashed;
  ctx->out.warnings.push_back(StrCat("key ", key, ": copy on ", Short(loser.id),
                                     " differed and lost; its DUMP is at ", *stashed));
  return CopyCheck::kStashed;
}

// Drain only: keys present on both sides. The owner (`to`) served every client, so its copy
// wins; the draining node's copy is deleted, after its DUMP was stashed when it differs.
Finisher::StepStatus Finisher::ResolveConflicts(Context* ctx, const MasterView& from,
                                                const MasterView& to) {
  std::vector<std::string> keys = std::move(ctx->conflict_keys);
  ctx->conflict_keys.clear();
  for (const std::string& k : keys) {
    const CopyCheck check = StashLosingCopy(ctx, from, to, k);
    if (check == CopyCheck::kMissing) continue;  // not a conflict (any more)
    if (check == CopyCheck::kOverBudget || check == CopyCheck::kError) {
      ctx->stop_result = check == CopyCheck::kError ? Result::kInterrupted : Result::kFailed;
      ctx->stop_reason = check == CopyCheck::kError
                             ? StrCat("could not compare or stash the copies of ", k)
                             : "conflicting copies exceed the stash budget: operator needed";
      return StepStatus::kStop;
    }
    if (check == CopyCheck::kIdentical) ++ctx->out.duplicates_dropped;
    auto client = NodeClient(from);
    auto del = client.ok() ? (*client)->Pipeline({{"ASKING"}, {"DEL", k}})
                           : absl::StatusOr<std::vector<RespValue>>(client.status());
    if (!del.ok() || (*del)[1].is_error()) break;  // the next poll decides
    Audit(kComponent, "step",
          {{"slot", ctx->slot},
           {"step", "resolve-conflict"},
           {"key", k},
           {"node", Short(from.id)},
           {"kept", Short(to.id)},
           {"identical", check == CopyCheck::kIdentical},
           {"token", ctx->out.token}});
  }
  return StepStatus::kOk;
}

void Finisher::Pace(Context* ctx, const MasterView& from, uint64_t bytes) {
  SleepFor(options_.batch_pause);
  if (options_.max_bytes_per_sec > 0) {
    ctx->paced_bytes += bytes;
    const auto due =
        std::chrono::milliseconds(ctx->paced_bytes * 1000 / options_.max_bytes_per_sec);
    const auto spent =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - ctx->paced_since);
    if (due > spent) SleepFor(due - spent);
  }
  auto client = NodeClient(from);
  if (!client.ok()) return;
  const auto t0 = Clock::now();
  auto pong = (*client)->Command({"PING"});
  const auto rtt = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  if (pong.ok() && rtt > options_.source_rtt_limit) {
    ++ctx->out.throttled;
    SleepFor(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000), rtt * 10));
  }
}

// --- Preflight (C.2 step 4) ----------------------------------------------------------------------

bool Finisher::Preflight(Context* ctx, const ClusterSnapshot& snap) {
  ctx->preflight_done = true;
  const MasterView* to = snap.MasterById(ctx->intent.to);
  auto refuse = [&](std::string why) {
    ctx->stop_result = Result::kRefused;
    ctx->stop_reason = StrCat("preflight: ", why);
    return false;
  };
  if (to == nullptr || !to->reachable || to->loading)
    return refuse("target not reachable or loading");
  if (ctx->intent.kind != RepairIntentKind::kAssign && to->info.state != "ok") {
    return refuse(StrCat("target says cluster_state:", to->info.state));
  }
  const bool moves = ctx->intent.kind == RepairIntentKind::kForward ||
                     ctx->intent.kind == RepairIntentKind::kDrain;
  const MasterView* from = moves ? snap.MasterById(ctx->intent.from) : nullptr;
  const int64_t count = from != nullptr ? from->KeysIn(ctx->slot) : 0;
  if (count <= 0) return true;
  auto client = NodeClient(*from);
  auto listed = client.ok()
                    ? (*client)->Command({"CLUSTER", "GETKEYSINSLOT", std::to_string(ctx->slot),
                                          std::to_string(options_.sample_keys)})
                    : absl::StatusOr<RespValue>(client.status());
  if (!listed.ok() || !listed->is_array()) return refuse("cannot list the source's keys");
  std::vector<std::string> sample;
  for (const RespValue& k : listed->elements) sample.push_back(k.str);
  auto sizes = KeySizes(*from, sample);
  if (!sizes.ok()) return refuse(StrCat("MEMORY USAGE: ", StatusText(sizes.status())));
  uint64_t sampled = 0;
  for (size_t i = 0; i < sample.size(); ++i) {
    sampled += (*sizes)[i];
    if ((*sizes)[i] >= options_.flag_key_bytes || (*sizes)[i] >= options_.big_key_bytes) {
      CheckBlockingKey(ctx, *from, sample[i], (*sizes)[i]);
      if (!ctx->stop_reason.empty()) return false;
    }
  }
  const uint64_t estimate = sample.empty() || static_cast<int64_t>(sample.size()) >= count
                                ? sampled
                                : sampled / sample.size() * static_cast<uint64_t>(count);
  Audit(kComponent, "step",
        {{"slot", ctx->slot},
         {"step", "preflight"},
         {"source", Short(from->id)},
         {"target", Short(to->id)},
         {"keys", count},
         {"estimated_bytes", estimate},
         {"target_used", to->memory.used_memory},
         {"target_maxmemory", to->memory.maxmemory},
         {"policy", to->memory.maxmemory_policy},
         {"token", ctx->out.token}});
  return CheckTargetMemory(ctx, *to, estimate);
}

bool Finisher::CheckTargetMemory(Context* ctx, const MasterView& to, uint64_t import_bytes) {
  const MemoryInfo& m = to.memory;
  if (m.maxmemory == 0) return true;
  const double need = static_cast<double>(m.used_memory) +
                      static_cast<double>(import_bytes) * options_.memory_factor;
  auto refuse = [&](std::string why) {
    ctx->stop_result = Result::kRefused;
    ctx->stop_reason =
        StrCat("preflight: ", why, " (used=", m.used_memory, " import~", import_bytes,
               " maxmemory=", m.maxmemory, " policy=", m.maxmemory_policy, ")");
    return false;
  };
  // With an eviction policy the target would silently evict keys (S7): refuse outright.
  if (m.maxmemory_policy != "noeviction" &&
      need > options_.eviction_refuse_ratio * static_cast<double>(m.maxmemory)) {
    return refuse("import would push an evicting target past 90% of maxmemory");
  }
  if (need + static_cast<double>(options_.memory_headroom_bytes) >=
      static_cast<double>(m.maxmemory)) {
    return refuse("target lacks memory headroom for the import");
  }
  return true;
}

void Finisher::CheckBlockingKey(Context* ctx, const MasterView& from, std::string_view key,
                                uint64_t bytes) {
  if (bytes >= options_.flag_key_bytes) {
    const std::string flag = StrCat(key, " ", bytes);
    if (std::find(ctx->out.big_keys.begin(), ctx->out.big_keys.end(), flag) ==
        ctx->out.big_keys.end()) {
      ctx->out.big_keys.push_back(flag);
    }
  }
  if (ctx->node_timeout_ms < 0) {
    ctx->node_timeout_ms = 15000;
    auto client = NodeClient(from);
    auto reply = client.ok() ? (*client)->Command({"CONFIG", "GET", "cluster-node-timeout"})
                             : absl::StatusOr<RespValue>(client.status());
    if (reply.ok() && reply->is_array() && reply->elements.size() == 2) {
      ParseInt(reply->elements[1].str, &ctx->node_timeout_ms);
    }
  }
  const double block_ms =
      static_cast<double>(bytes) * 1000.0 / static_cast<double>(options_.block_bytes_per_sec);
  if (block_ms <= options_.node_timeout_fraction * static_cast<double>(ctx->node_timeout_ms))
    return;
  const std::string warning =
      StrCat("key ", key, " (", bytes, " bytes) would block the source ~",
             static_cast<int64_t>(block_ms), " ms, more than ", options_.node_timeout_fraction,
             " x cluster-node-timeout ", ctx->node_timeout_ms, " ms");
  spdlog::warn("migration slot={} {}", ctx->slot, warning);
  if (std::find(ctx->out.warnings.begin(), ctx->out.warnings.end(), warning) ==
      ctx->out.warnings.end()) {
    ctx->out.warnings.push_back(warning);
  }
  if (options_.refuse_blocking_keys) {
    ctx->stop_result = Result::kRefused;
    ctx->stop_reason = StrCat("preflight: ", warning);
  }
}

// --- End of a run --------------------------------------------------------------------------------

FinishOutcome Finisher::Finish(Context* ctx, const ClusterSnapshot& snap) {
  // C.2 step 7: PlanNextStep said done, so every view names the owner, no marker is left and no
  // other master holds a key (strict). The owner's count is compared loosely: clients may have
  // written, deleted or let keys expire meanwhile.
  const MasterView* owner = snap.MasterById(ctx->intent.to);
  ctx->out.keys_after = owner != nullptr ? owner->KeysIn(ctx->slot) : -1;
  // keys_before counted a key present on two nodes twice; those copies were merged.
  const int64_t merged = static_cast<int64_t>(ctx->out.keys_replaced + ctx->out.conflicts_stashed +
                                              ctx->out.duplicates_dropped);
  const int64_t expected = ctx->out.keys_before - merged;
  if (ctx->out.keys_before >= 0 && ctx->out.keys_after < expected) {
    ctx->out.warnings.push_back(StrCat("owner holds ", ctx->out.keys_after, " keys, ",
                                       expected - ctx->out.keys_after,
                                       " fewer than at the start (expired or deleted meanwhile?)"));
  }
  if (owner != nullptr && ctx->evicted_before) {
    auto client = NodeClient(*owner);
    auto stats = client.ok() ? (*client)->Command({"INFO", "stats"})
                             : absl::StatusOr<RespValue>(client.status());
    uint64_t evicted = 0;
    if (stats.ok() && ParseInt(InfoField(stats->str, "evicted_keys"), &evicted) &&
        evicted > *ctx->evicted_before) {
      ctx->out.evicted_on_target = evicted - *ctx->evicted_before;
      ctx->out.warnings.push_back(
          StrCat(ctx->out.evicted_on_target, " keys evicted on the new owner during the repair"));
      spdlog::error("migration slot={} owner evicted {} keys during the repair", ctx->slot,
                    ctx->out.evicted_on_target);
    }
  }
  Audit(kComponent, "step",
        {{"slot", ctx->slot},
         {"step", "verify"},
         {"owner", Short(ctx->intent.to)},
         {"keys_before", ctx->out.keys_before},
         {"keys_after", ctx->out.keys_after},
         {"moved", ctx->out.keys_moved},
         {"bytes", ctx->out.bytes_moved},
         {"failures", ctx->out.failures},
         {"replaced", ctx->out.keys_replaced},
         {"stashed", ctx->out.conflicts_stashed},
         {"evicted", ctx->out.evicted_on_target},
         {"token", ctx->out.token}});
  return Stop(ctx, Result::kDone, "verified");
}

FinishOutcome Finisher::Stop(Context* ctx, Result result, std::string reason) {
  ctx->out.result = result;
  ctx->out.reason = std::move(reason);
  ctx->out.intent = ctx->intent;
  if (ctx->lease_held && result != Result::kAborted) {
    Journal j;
    j.step = result == Result::kDone ? "done" : std::string(FinishResultName(result));
    j.action = std::string(RepairIntentName(ctx->intent.kind));
    j.source = ctx->intent.from;
    j.target = ctx->intent.to;
    j.attempts = ctx->attempts;
    j.keys_before = ctx->out.keys_before;
    j.note = ctx->out.reason;
    (void)lease_->WriteJournal(ctx->slot, j);
    (void)lease_->Release(ctx->slot);
  }
  Audit(kComponent, "end",
        {{"slot", ctx->slot},
         {"action", RepairIntentName(ctx->intent.kind)},
         {"from", Short(ctx->intent.from)},
         {"to", Short(ctx->intent.to)},
         {"result", FinishResultName(result)},
         {"reason", ctx->out.reason},
         {"steps", ctx->out.steps},
         {"moved", ctx->out.keys_moved},
         {"bytes", ctx->out.bytes_moved},
         {"failures", ctx->out.failures},
         {"resumed", ctx->out.resumed},
         {"leaseless", ctx->leaseless},
         {"token", ctx->out.token}});
  return ctx->out;
}

void Finisher::AuditStep(Context* ctx, const FinisherStep& step, const ClusterSnapshot& snap,
                         std::string_view result) {
  auto count = [&](const std::string& id) -> int64_t {
    const MasterView* m = snap.MasterById(id);
    if (m == nullptr) return -1;
    auto client = NodeClient(*m);
    auto n = client.ok()
                 ? (*client)->Command({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(ctx->slot)})
                 : absl::StatusOr<RespValue>(client.status());
    return n.ok() && n->type == ReplyType::kInteger ? n->integer : -1;
  };
  auto before = [&](const std::string& id) -> int64_t {
    const MasterView* m = snap.MasterById(id);
    return m == nullptr ? -1 : m->KeysIn(ctx->slot);
  };
  const bool peer = !step.peer.empty();
  Audit(kComponent, "step",
        {{"slot", ctx->slot},
         {"step", FinisherStepName(step.kind)},
         {"action", RepairIntentName(ctx->intent.kind)},
         {"node", Short(step.node)},
         {"peer", Short(step.peer)},
         {"node_keys_before", before(step.node)},
         {"node_keys_after", count(step.node)},
         {"peer_keys_before", peer ? before(step.peer) : -1},
         {"peer_keys_after", peer ? count(step.peer) : -1},
         {"token", ctx->out.token},
         {"result", result}});
  ctx->out.step_log.push_back(StrCat(FinisherStepName(step.kind), " ", Short(step.node),
                                     peer ? StrCat(" ", Short(step.peer)) : std::string(), ": ",
                                     result));
}

}  // namespace slotpilot::migration
