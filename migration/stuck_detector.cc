#include "migration/stuck_detector.h"

#include <algorithm>
#include <ostream>
#include <utility>

#include "protocol/strings.h"

namespace slotpilot::migration {
namespace {

using Op = PlanStep::Op;

// --- Facts about one slot, read from the snapshot -----------------------------------------------

struct Marker {
  int index = -1;    // master showing the marker
  std::string peer;  // migrating: destination id; importing: source id
};

struct SlotFacts {
  const ClusterSnapshot* snap = nullptr;
  uint16_t slot = 0;
  std::vector<Marker> mig;
  std::vector<Marker> imp;
  int reachable = 0;

  const MasterView& M(int i) const { return snap->masters[i]; }
  int64_t Keys(int i) const { return i < 0 || !M(i).reachable ? -1 : M(i).KeysIn(slot); }
  std::string_view Own(int i) const { return M(i).OwnerId(slot); }
  bool Claims(int i) const { return i >= 0 && M(i).reachable && Own(i) == M(i).id; }
};

SlotFacts Gather(const ClusterSnapshot& snap, uint16_t slot) {
  SlotFacts f;
  f.snap = &snap;
  f.slot = slot;
  for (size_t i = 0; i < snap.masters.size(); ++i) {
    const MasterView& m = snap.masters[i];
    if (!m.reachable) continue;
    ++f.reachable;
    if (auto dst = m.MigratingTo(slot)) f.mig.push_back({static_cast<int>(i), *dst});
    if (auto src = m.ImportingFrom(slot)) f.imp.push_back({static_cast<int>(i), *src});
  }
  return f;
}

NodeRef Ref(const ClusterSnapshot& snap, std::string_view id) {
  NodeRef ref;
  ref.id = std::string(id);
  if (const MasterView* m = snap.MasterById(id)) ref.endpoint = m->endpoint;
  return ref;
}

std::string Addr(const NodeRef& n) { return n.known() ? n.endpoint.ToString() : n.ToString(); }

std::string CountText(int64_t n) { return n < 0 ? std::string("?") : StrCat(n); }

// --- Plan steps ---------------------------------------------------------------------------------

PlanStep SetSlot(Op op, uint16_t slot, const NodeRef& on, const NodeRef& peer) {
  PlanStep step{op, on, peer, ""};
  switch (op) {
    case Op::kSetSlotImporting:
      step.text = StrCat("CLUSTER SETSLOT ", slot, " IMPORTING ", peer.id, " on ", Addr(on));
      break;
    case Op::kSetSlotMigrating:
      step.text = StrCat("CLUSTER SETSLOT ", slot, " MIGRATING ", peer.id, " on ", Addr(on));
      break;
    case Op::kSetSlotNode:
      step.text = StrCat("CLUSTER SETSLOT ", slot, " NODE ", peer.id, " on ", Addr(on));
      break;
    default:
      step.op = Op::kSetSlotStable;
      step.peer = NodeRef{};
      step.text = StrCat("CLUSTER SETSLOT ", slot, " STABLE on ", Addr(on));
  }
  return step;
}

PlanStep MoveKeys(uint16_t slot, const NodeRef& from, const NodeRef& to, int64_t keys) {
  const std::string port = to.known() ? StrCat(to.endpoint.port) : std::string("?");
  const std::string host = to.known() ? to.endpoint.host : std::string("?");
  return PlanStep{
      Op::kMoveKeys, from, to,
      StrCat("move the ", CountText(keys), " keys of slot ", slot, " from ", Addr(from), " to ",
             Addr(to), ": CLUSTER GETKEYSINSLOT ", slot, " <n> + MIGRATE ", host, " ", port,
             " \"\" 0 <timeout> KEYS ... on ", Addr(from), ", in batches, until it has none")};
}

PlanStep CheckNoKeys(uint16_t slot, const NodeRef& owner) {
  return PlanStep{
      Op::kCheckNoKeys, NodeRef{}, owner,
      StrCat("check CLUSTER COUNTKEYSINSLOT ", slot, " = 0 on every master but ", Addr(owner))};
}

PlanStep Verify(uint16_t slot, const NodeRef& owner) {
  return PlanStep{Op::kVerify, NodeRef{}, owner,
                  StrCat("verify every master's view says ", Addr(owner), " owns slot ", slot,
                         ", no open marker remains and the key counts add up")};
}

PlanStep Assign(uint16_t slot, const NodeRef& on) {
  return PlanStep{
      Op::kAssign, on, on,
      StrCat("MULTI; CLUSTER ADDSLOTS ", slot, "; CLUSTER BUMPEPOCH; EXEC on ", Addr(on))};
}

// Every master but the ones named, in snapshot order.
std::vector<NodeRef> Others(const ClusterSnapshot& snap, const std::string& a,
                            const std::string& b) {
  std::vector<NodeRef> out;
  for (const MasterView& m : snap.masters) {
    if (m.id != a && m.id != b) out.push_back(NodeRef{m.id, m.endpoint});
  }
  return out;
}

// SETSLOT NODE dst on dst (bumps its epoch: it is importing), then on src, then everywhere else
// (B.4 finish order; MIGRATION.md C.2 step 6), then verify.
void AppendCommit(const ClusterSnapshot& snap, uint16_t slot, const NodeRef& src,
                  const NodeRef& dst, std::vector<PlanStep>* plan) {
  plan->push_back(CheckNoKeys(slot, dst));
  plan->push_back(SetSlot(Op::kSetSlotNode, slot, dst, dst));
  if (!src.empty()) plan->push_back(SetSlot(Op::kSetSlotNode, slot, src, dst));
  for (const NodeRef& o : Others(snap, src.id, dst.id)) {
    plan->push_back(SetSlot(Op::kSetSlotNode, slot, o, dst));
  }
  plan->push_back(Verify(slot, dst));
}

std::vector<PlanStep> ForwardPlan(const ClusterSnapshot& snap, uint16_t slot, const NodeRef& a,
                                  const NodeRef& b, int64_t keys_a) {
  std::vector<PlanStep> plan;
  plan.push_back(SetSlot(Op::kSetSlotImporting, slot, b, a));  // target first (B.4)
  plan.push_back(SetSlot(Op::kSetSlotMigrating, slot, a, b));
  plan.push_back(MoveKeys(slot, a, b, keys_a));
  AppendCommit(snap, slot, a, b, &plan);
  return plan;
}

// Back from B to A. A is closed first: a MIGRATING A answers the RESTORE-ASKING of a key it does
// not have with ASK, so keys cannot come home while it is open. Until the move ends, keys still on
// B are not visible through A (reads miss, writes create a new copy that wins over B's).
std::vector<PlanStep> RollbackPlan(uint16_t slot, const NodeRef& a, const NodeRef& b,
                                   int64_t keys_b) {
  std::vector<PlanStep> plan;
  plan.push_back(SetSlot(Op::kSetSlotStable, slot, a, NodeRef{}));
  plan.push_back(SetSlot(Op::kSetSlotImporting, slot, b, a));  // lets B run MIGRATE for the slot
  plan.push_back(MoveKeys(slot, b, a, keys_b));
  plan.push_back(CheckNoKeys(slot, a));
  plan.push_back(SetSlot(Op::kSetSlotStable, slot, b, NodeRef{}));
  plan.push_back(Verify(slot, a));
  return plan;
}

std::vector<PlanStep> ClosePlan(uint16_t slot, const NodeRef& on, const NodeRef& owner) {
  return {SetSlot(Op::kSetSlotStable, slot, on, NodeRef{}), Verify(slot, owner)};
}

std::vector<PlanStep> DrainPlan(uint16_t slot, const NodeRef& a, const NodeRef& b, int64_t keys_b) {
  return {SetSlot(Op::kSetSlotImporting, slot, b, a),  // B stays importing while it drains
          MoveKeys(slot, b, a, keys_b), CheckNoKeys(slot, a),
          SetSlot(Op::kSetSlotStable, slot, b, NodeRef{}), Verify(slot, a)};
}

std::vector<PlanStep> AssignPlan(uint16_t slot, const NodeRef& t) {
  return {CheckNoKeys(slot, t), Assign(slot, t), Verify(slot, t)};
}

// --- Classification -----------------------------------------------------------------------------

class Classifier {
 public:
  Classifier(const ClusterSnapshot& snap, uint16_t slot, const AssessOptions& options)
      : f_(Gather(snap, slot)), snap_(snap), slot_(slot), options_(options) {
    a_.slot = slot;
  }
  SlotAssessment Run();

 private:
  void Set(Signature s, PlanKind k, std::string reason) {
    a_.signature = s;
    a_.action = k;
    a_.reason = std::move(reason);
    if (k == PlanKind::kAlert) {
      a_.plan = {PlanStep{Op::kAlert, NodeRef{}, NodeRef{}, "alert only: an operator must look"}};
    } else if (k == PlanKind::kWait) {
      a_.plan = {PlanStep{Op::kWait, NodeRef{}, NodeRef{},
                          StrCat("wait at least ", absl::FormatDuration(options_.settle_window),
                                 " for gossip to settle, then re-check")}};
    }
  }
  void Unknown(std::string reason) {
    Set(Signature::kUnknown, PlanKind::kAlert, std::move(reason));
  }
  void SetParties(const std::string& a, const std::string& b);
  void FillKeysElsewhere();
  bool NoKeysElsewhere() const;  // every other reachable master counted 0
  bool CountsComplete() const;
  void AssessOpen();
  bool TryUnclaimed();
  void AssessReshard();
  void AssessMigratingOnly();
  void AssessImportingOnly();
  void AssessClosed();
  void AssessUnassigned(const std::vector<int>& holders);
  int ResolveNode(std::string_view id_or_address) const;

  SlotFacts f_;
  const ClusterSnapshot& snap_;
  const uint16_t slot_;
  const AssessOptions& options_;
  SlotAssessment a_;
  int ia_ = -1;  // source index
  int ib_ = -1;  // target index
};

SlotAssessment Classifier::Run() {
  a_.complete = CountsComplete();
  if (f_.reachable == 0) {
    Unknown("no master answered the poll");
  } else if (f_.mig.size() > 1 || f_.imp.size() > 1) {
    FillKeysElsewhere();
    Unknown(StrCat(f_.mig.size(), " masters show slot ", slot_, " MIGRATING and ", f_.imp.size(),
                   " IMPORTING: more than one migration at once"));
  } else if (!f_.mig.empty() || !f_.imp.empty()) {
    AssessOpen();
  } else {
    AssessClosed();
  }
  if (!a_.complete && a_.signature != Signature::kStable) {
    StrAppend(&a_.reason, " (view incomplete: a master is unreachable or was not counted)");
  }
  return std::move(a_);
}

bool Classifier::CountsComplete() const {
  for (const MasterView& m : snap_.masters) {
    if (!m.reachable || m.KeysIn(slot_) < 0) return false;
  }
  return !snap_.masters.empty();
}

void Classifier::SetParties(const std::string& a, const std::string& b) {
  a_.source = Ref(snap_, a);
  a_.target = Ref(snap_, b);
  ia_ = snap_.IndexOfId(a);
  ib_ = snap_.IndexOfId(b);
  a_.keys_source = f_.Keys(ia_);
  a_.keys_target = f_.Keys(ib_);
  a_.source_epoch = ia_ >= 0 ? f_.M(ia_).config_epoch : 0;
  a_.target_epoch = ib_ >= 0 ? f_.M(ib_).config_epoch : 0;
  a_.source_migrate_calls = ia_ >= 0 ? f_.M(ia_).migrate_calls : -1;
  a_.target_migrate_calls = ib_ >= 0 ? f_.M(ib_).migrate_calls : -1;
  FillKeysElsewhere();
}

void Classifier::FillKeysElsewhere() {
  a_.keys_elsewhere.clear();
  for (size_t i = 0; i < snap_.masters.size(); ++i) {
    const int idx = static_cast<int>(i);
    if (idx == ia_ || idx == ib_) continue;
    const int64_t k = f_.Keys(idx);
    if (k != 0) a_.keys_elsewhere[snap_.masters[i].id] = k;
  }
}

// Unreachable masters are not held against the classification (the view is marked incomplete
// and the detector does not act while a master is unhealthy); a reachable master whose keys were
// not counted, or that holds keys, is.
bool Classifier::NoKeysElsewhere() const {
  for (const auto& [id, k] : a_.keys_elsewhere) {
    const MasterView* m = snap_.MasterById(id);
    if (k > 0 || (m != nullptr && m->reachable)) return false;
  }
  return true;
}

void Classifier::AssessOpen() {
  const std::string a = !f_.mig.empty() ? f_.M(f_.mig[0].index).id : f_.imp[0].peer;
  const std::string b = !f_.mig.empty() ? f_.mig[0].peer : f_.M(f_.imp[0].index).id;
  SetParties(a, b);
  if (!f_.mig.empty() && !f_.imp.empty() && (f_.imp[0].index != ib_ || f_.imp[0].peer != a)) {
    Unknown(StrCat("markers do not pair: ", Addr(a_.source), " is MIGRATING to ", b, " but ",
                   f_.M(f_.imp[0].index).endpoint.ToString(), " is IMPORTING from ",
                   f_.imp[0].peer));
    return;
  }
  if (!f_.imp.empty() && TryUnclaimed()) return;
  if (!f_.mig.empty() && !f_.imp.empty()) {
    AssessReshard();
  } else if (!f_.mig.empty()) {
    AssessMigratingOnly();
  } else {
    AssessImportingOnly();
  }
}

// S4a: B importing from A; A already gave the slot to B, B still names A: nobody claims it.
bool Classifier::TryUnclaimed() {
  if (ia_ < 0 || !f_.M(ia_).reachable) return false;
  if (f_.Own(ia_) != a_.target.id || f_.Own(ib_) != a_.source.id) return false;
  if (!f_.mig.empty() && f_.mig[0].index != ia_) return false;
  if (a_.keys_source != 0 || !NoKeysElsewhere() || a_.keys_target < 0) {
    Unknown(StrCat("slot ", slot_, " is unclaimed after a partial finish (", Addr(a_.source),
                   " says ", Addr(a_.target), " owns it, ", Addr(a_.target),
                   " is importing and says ", Addr(a_.source),
                   "), but keys are left outside the target: source ", CountText(a_.keys_source),
                   ", target ", CountText(a_.keys_target)));
    return true;
  }
  Set(Signature::kUnclaimedAfterPartialFinish, PlanKind::kCommit,
      StrCat(Addr(a_.source), " already names ", Addr(a_.target), " as owner of slot ", slot_,
             " and holds no keys; ", Addr(a_.target),
             " is still IMPORTING from it and names it "
             "as owner, so nobody claims the slot (MOVED ping-pong). Commit to the target"));
  a_.intended_owner = a_.target;
  AppendCommit(snap_, slot_, a_.source, a_.target, &a_.plan);
  return true;
}

// S3: Mig={A->B}, Imp={B<-A}, every view Own=A.
void Classifier::AssessReshard() {
  for (const MasterView& m : snap_.masters) {
    if (m.reachable && m.OwnerId(slot_) != a_.source.id) {
      Unknown(
          StrCat("slot ", slot_, " is open from ", Addr(a_.source), " to ", Addr(a_.target),
                 " but ", m.endpoint.ToString(), " names ",
                 m.OwnerId(slot_).empty() ? std::string("nobody") : std::string(m.OwnerId(slot_)),
                 " as owner"));
      return;
    }
  }
  if (!NoKeysElsewhere()) {
    Unknown(StrCat("interrupted reshard of slot ", slot_, " with keys on a third master"));
    return;
  }
  Set(Signature::kInterruptedReshard, PlanKind::kForward,
      StrCat("reshard of slot ", slot_, " from ", Addr(a_.source), " to ", Addr(a_.target),
             " stopped midway: ", CountText(a_.keys_source), " keys left on the source, ",
             CountText(a_.keys_target),
             " on the target; finish it toward the MIGRATING "
             "destination (intent), not by key counts"));
  a_.intended_owner = a_.target;
  a_.plan = ForwardPlan(snap_, slot_, a_.source, a_.target, a_.keys_source);
  a_.rollback = RollbackPlan(slot_, a_.source, a_.target, a_.keys_target);
}

// Mig={A->B}, Imp={}: S1, S1b, the stale marker a finish leaves, or the target's claim in flight.
void Classifier::AssessMigratingOnly() {
  const bool a_owns = f_.Own(ia_) == a_.source.id;
  if (!a_owns) {
    if (a_.keys_source == 0 && NoKeysElsewhere()) {
      Set(Signature::kStaleMigratingMarker, PlanKind::kClose,
          StrCat(Addr(a_.source), " shows slot ", slot_, " MIGRATING to ", Addr(a_.target),
                 " but no longer owns it (its view names ",
                 f_.Own(ia_).empty() ? std::string("nobody") : std::string(f_.Own(ia_)),
                 ") and holds no keys: a leftover marker with no effect; close it"));
      a_.intended_owner = Ref(snap_, f_.Own(ia_));
      a_.plan = ClosePlan(slot_, a_.source, a_.intended_owner);
    } else {
      Unknown(StrCat(Addr(a_.source), " shows slot ", slot_,
                     " MIGRATING but does not own it, and "
                     "keys are left on it or elsewhere"));
    }
    return;
  }
  if (f_.Claims(ib_)) {
    if (a_.keys_source != 0) {
      Unknown(StrCat(Addr(a_.target), " claims slot ", slot_, " while ", Addr(a_.source),
                     " still owns it in its view with ", CountText(a_.keys_source),
                     " keys: the source deletes them when it hears the claim (S4b)"));
    } else if (options_.disputed_for < options_.settle_window) {
      Set(Signature::kGossipSettling, PlanKind::kWait,
          StrCat(Addr(a_.target), " claims slot ", slot_, "; ", Addr(a_.source),
                 " (MIGRATING, no keys) has not heard it yet"));
    } else {
      Unknown(StrCat(Addr(a_.target), " claims slot ", slot_, " but ", Addr(a_.source),
                     " still owns it after ", absl::FormatDuration(options_.disputed_for)));
    }
    return;
  }
  if (a_.keys_target < 0 || !NoKeysElsewhere()) {
    Unknown(StrCat("slot ", slot_, " MIGRATING from ", Addr(a_.source), " to ", Addr(a_.target),
                   ": target keys not counted or keys on a third master"));
    return;
  }
  if (a_.keys_target == 0) {
    Set(Signature::kHalfOpenSource, PlanKind::kClose,
        StrCat(Addr(a_.source), " is MIGRATING slot ", slot_, " to ", Addr(a_.target),
               " which is not importing and holds no keys: absent keys loop ASK->MOVED and "
               "cannot be written. Close the source"));
    a_.intended_owner = a_.source;
    a_.plan = ClosePlan(slot_, a_.source, a_.source);
    return;
  }
  Set(Signature::kHalfClosedTarget, PlanKind::kImportThenForward,
      StrCat(Addr(a_.source), " is MIGRATING slot ", slot_, " to ", Addr(a_.target),
             " which holds ", a_.keys_target,
             " keys but is not importing (its IMPORTING was lost or closed): "
             "re-open the target, then finish forward"));
  a_.intended_owner = a_.target;
  a_.plan = ForwardPlan(snap_, slot_, a_.source, a_.target, a_.keys_source);
  a_.rollback = RollbackPlan(slot_, a_.source, a_.target, a_.keys_target);
}

// Mig={}, Imp={B<-A}: S2 or S2b.
void Classifier::AssessImportingOnly() {
  const bool a_owns_everywhere =
      ia_ >= 0 && f_.Own(ia_) == a_.source.id && f_.Own(ib_) == a_.source.id;
  if (a_.keys_target == 0 && NoKeysElsewhere() && (a_owns_everywhere || ia_ < 0)) {
    Set(Signature::kHalfOpenTarget, PlanKind::kClose,
        StrCat(Addr(a_.target), " is IMPORTING slot ", slot_, " from ", Addr(a_.source),
               " which is not migrating; the target holds no keys. Close the target"));
    a_.intended_owner = Ref(snap_, f_.Own(ib_));
    a_.plan = ClosePlan(slot_, a_.target, a_.intended_owner);
    return;
  }
  if (!a_owns_everywhere || a_.keys_target < 0 || a_.keys_source < 0 || !NoKeysElsewhere()) {
    Unknown(StrCat(Addr(a_.target), " is IMPORTING slot ", slot_, " from ", Addr(a_.source),
                   " but the owner views or key counts do not fit a known signature (source "
                   "keys ",
                   CountText(a_.keys_source), ", target keys ", CountText(a_.keys_target), ")"));
    return;
  }
  Set(Signature::kStrayWritesOnTarget, PlanKind::kDrainThenStable,
      StrCat(Addr(a_.target), " is IMPORTING slot ", slot_, " from ", Addr(a_.source),
             " which is not migrating, and holds ", a_.keys_target,
             " stray keys written with ASKING: drain them back to the owner, then close"));
  a_.intended_owner = a_.source;
  a_.plan = DrainPlan(slot_, a_.source, a_.target, a_.keys_target);
}

void Classifier::AssessClosed() {
  std::set<std::string> named;  // owners named by the reachable views ("" = unassigned)
  std::vector<int> claimers;
  std::vector<int> holders;
  for (size_t i = 0; i < snap_.masters.size(); ++i) {
    const int idx = static_cast<int>(i);
    if (!f_.M(idx).reachable) continue;
    named.insert(std::string(f_.Own(idx)));
    if (f_.Claims(idx)) claimers.push_back(idx);
    if (f_.Keys(idx) > 0) holders.push_back(idx);
  }
  if (claimers.empty() && named.size() == 1 && !named.begin()->empty()) {
    const MasterView* owner = snap_.MasterById(*named.begin());
    if (owner == nullptr || !owner->reachable) {
      FillKeysElsewhere();
      Unknown(StrCat("every reachable view names ", *named.begin(), " as owner of slot ", slot_,
                     ", which did not answer the poll"));
      return;
    }
  }
  if (claimers.empty()) {
    AssessUnassigned(holders);
    return;
  }
  const std::string owner(f_.Own(claimers[0]));
  SetParties(owner, "");
  a_.target = NodeRef{};
  if (named.size() == 1) {
    // Uncounted masters do not make a stable slot suspect; only keys seen on a non-owner do.
    if (holders.empty() || (holders.size() == 1 && holders[0] == claimers[0])) {
      Set(Signature::kStable, PlanKind::kNone, "stable: every view agrees, keys only on the owner");
      a_.intended_owner = a_.source;
      return;
    }
    Unknown(StrCat("slot ", slot_, " is not open and every view names ", Addr(a_.source),
                   ", but another master holds keys of it (a failover mid-migration?)"));
    return;
  }
  if (holders.size() > 1 || options_.disputed_for >= options_.settle_window) {
    Unknown(StrCat("views disagree about the owner of slot ", slot_, " for ",
                   absl::FormatDuration(options_.disputed_for), " with keys on ", holders.size(),
                   " masters"));
    return;
  }
  Set(Signature::kGossipSettling, PlanKind::kWait,
      StrCat("views disagree about the owner of slot ", slot_, " (", named.size(),
             " different answers) for ", absl::FormatDuration(options_.disputed_for),
             "; no open marker: gossip should settle it"));
}

// S8: nobody claims the slot. Target: the one node holding keys; with none, the previous owner
// (caller's hint), else the node the other views still name. Never a random node.
void Classifier::AssessUnassigned(const std::vector<int>& holders) {
  if (holders.size() > 1) {
    Unknown(StrCat("slot ", slot_, " is unassigned and ", holders.size(),
                   " masters hold keys of it: no authoritative copy"));
    return;
  }
  int target = holders.empty() ? -1 : holders[0];
  std::string why = target >= 0 ? std::string("the only master holding its keys") : "";
  if (target < 0 && !CountsComplete()) {
    Unknown(StrCat("slot ", slot_, " is unassigned and its keys were not counted everywhere"));
    return;
  }
  if (target < 0 && !options_.previous_owner.empty()) {
    target = ResolveNode(options_.previous_owner);
    why = "its previous owner";
  }
  if (target < 0) {
    std::set<std::string> named;
    for (size_t i = 0; i < snap_.masters.size(); ++i) {
      if (snap_.masters[i].reachable && !f_.Own(static_cast<int>(i)).empty()) {
        named.insert(std::string(f_.Own(static_cast<int>(i))));
      }
    }
    if (named.size() == 1) target = snap_.IndexOfId(*named.begin());
    why = "the node the other views still name as owner";
  }
  if (target < 0) {
    Unknown(StrCat("slot ", slot_,
                   " is unassigned, no master holds keys of it and its previous "
                   "owner is unknown: refusing to pick a random master"));
    return;
  }
  SetParties("", snap_.masters[target].id);
  if (!f_.Own(target).empty() || !f_.M(target).reachable) {
    Unknown(StrCat("slot ", slot_, " is unassigned but ", Addr(a_.target),
                   " cannot take it with ADDSLOTS (unreachable, or its view names ",
                   std::string(f_.Own(target)), ")"));
    return;
  }
  Set(Signature::kUnassigned, PlanKind::kAssign,
      StrCat("no master claims slot ", slot_, " (", CountText(a_.keys_target), " keys on ",
             Addr(a_.target), "); assign it to ", Addr(a_.target), ", ", why));
  a_.intended_owner = a_.target;
  a_.plan = AssignPlan(slot_, a_.target);
}

int Classifier::ResolveNode(std::string_view id_or_address) const {
  for (size_t i = 0; i < snap_.masters.size(); ++i) {
    const MasterView& m = snap_.masters[i];
    if (m.id == id_or_address || m.endpoint.ToString() == id_or_address) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string StepsText(const std::vector<PlanStep>& steps) {
  std::string out;
  for (size_t i = 0; i < steps.size(); ++i) {
    StrAppend(&out, i == 0 ? "" : " ", i + 1, ") ", steps[i].text);
  }
  return out;
}

}  // namespace

// --- Names --------------------------------------------------------------------------------------

std::string_view SignatureName(Signature s) {
  switch (s) {
    case Signature::kStable:
      return "stable";
    case Signature::kInterruptedReshard:
      return "interrupted-reshard";
    case Signature::kHalfOpenSource:
      return "half-open-source";
    case Signature::kHalfClosedTarget:
      return "half-closed-target";
    case Signature::kHalfOpenTarget:
      return "half-open-target";
    case Signature::kStrayWritesOnTarget:
      return "stray-writes-on-target";
    case Signature::kUnclaimedAfterPartialFinish:
      return "unclaimed-after-partial-finish";
    case Signature::kStaleMigratingMarker:
      return "stale-migrating-marker";
    case Signature::kGossipSettling:
      return "gossip-settling";
    case Signature::kUnassigned:
      return "unassigned";
    case Signature::kUnknown:
      return "unknown";
  }
  return "unknown";
}

std::string_view ScenarioTag(Signature s) {
  switch (s) {
    case Signature::kInterruptedReshard:
      return "S3";
    case Signature::kHalfOpenSource:
      return "S1";
    case Signature::kHalfClosedTarget:
      return "S1b";
    case Signature::kHalfOpenTarget:
      return "S2";
    case Signature::kStrayWritesOnTarget:
      return "S2b";
    case Signature::kUnclaimedAfterPartialFinish:
      return "S4a";
    case Signature::kGossipSettling:
      return "S4c";
    case Signature::kUnassigned:
      return "S8";
    default:
      return "";
  }
}

std::string_view PlanKindName(PlanKind k) {
  switch (k) {
    case PlanKind::kNone:
      return "none";
    case PlanKind::kForward:
      return "forward";
    case PlanKind::kClose:
      return "close";
    case PlanKind::kImportThenForward:
      return "import-then-forward";
    case PlanKind::kDrainThenStable:
      return "drain-then-stable";
    case PlanKind::kCommit:
      return "commit";
    case PlanKind::kWait:
      return "wait";
    case PlanKind::kAssign:
      return "assign";
    case PlanKind::kAlert:
      return "alert";
  }
  return "alert";
}

bool IsRepairable(PlanKind k) {
  return k != PlanKind::kNone && k != PlanKind::kWait && k != PlanKind::kAlert;
}

bool MovesKeys(PlanKind k) {
  return k == PlanKind::kForward || k == PlanKind::kImportThenForward ||
         k == PlanKind::kDrainThenStable;
}

std::string_view PlanOpName(PlanStep::Op op) {
  switch (op) {
    case Op::kSetSlotImporting:
      return "setslot-importing";
    case Op::kSetSlotMigrating:
      return "setslot-migrating";
    case Op::kSetSlotStable:
      return "setslot-stable";
    case Op::kSetSlotNode:
      return "setslot-node";
    case Op::kMoveKeys:
      return "move-keys";
    case Op::kCheckNoKeys:
      return "check-no-keys";
    case Op::kAssign:
      return "assign";
    case Op::kVerify:
      return "verify";
    case Op::kWait:
      return "wait";
    case Op::kAlert:
      return "alert";
  }
  return "alert";
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kHealthy:
      return "healthy";
    case Verdict::kObserving:
      return "observing";
    case Verdict::kProgressing:
      return "progressing";
    case Verdict::kWaiting:
      return "waiting";
    case Verdict::kStuck:
      return "stuck";
    case Verdict::kHealthyAgain:
      return "healthy-again";
  }
  return "observing";
}

std::ostream& operator<<(std::ostream& os, Signature s) { return os << SignatureName(s); }
std::ostream& operator<<(std::ostream& os, PlanKind k) { return os << PlanKindName(k); }
std::ostream& operator<<(std::ostream& os, Verdict v) { return os << VerdictName(v); }

std::string NodeRef::ToString() const {
  if (id.empty()) return "-";
  const std::string short_id = id.substr(0, 8);
  return known() ? StrCat(endpoint.ToString(), " (", short_id, ")") : StrCat(id, " (unknown node)");
}

std::string SlotAssessment::PlanText() const { return StepsText(plan); }
std::string SlotAssessment::RollbackText() const { return StepsText(rollback); }

SlotAssessment AssessSlot(const ClusterSnapshot& snapshot, uint16_t slot,
                          const AssessOptions& options) {
  return Classifier(snapshot, slot, options).Run();
}

// --- StuckDetector ------------------------------------------------------------------------------

namespace {

bool Known(absl::Time t) { return t != absl::InfinitePast(); }

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

}  // namespace

StuckDetector::StuckDetector(StuckDetectorOptions options)
    : options_(std::move(options)), last_owner_(protocol::kSlotCount, -1) {}

absl::Time StuckDetector::Now() const { return options_.clock ? options_.clock() : absl::Now(); }

void StuckDetector::OnLoopEvidence(uint16_t slot) {
  if (slot < protocol::kSlotCount) loop_slots_.insert(slot);
}

void StuckDetector::Forget(uint16_t slot) { history_.erase(slot); }

AssessOptions StuckDetector::AssessOptionsFor(uint16_t slot) const {
  AssessOptions o;
  o.settle_window = options_.settle_window;
  auto it = history_.find(slot);
  if (it != history_.end() && Known(it->second.disputed_since)) {
    o.disputed_for = Now() - it->second.disputed_since;
  }
  if (options_.previous_owner) o.previous_owner = options_.previous_owner(slot);
  if (o.previous_owner.empty() && slot < protocol::kSlotCount && last_owner_[slot] >= 0) {
    o.previous_owner = owner_ids_[last_owner_[slot]];
  }
  return o;
}

// Remembers, for every slot the reachable views agree on, who owns it: the fallback "previous
// owner" if the slot is later found unassigned.
void StuckDetector::RememberOwners(const ClusterSnapshot& snapshot,
                                   const std::set<uint16_t>& disputed) {
  const MasterView* view = nullptr;
  for (const MasterView& m : snapshot.masters) {
    if (m.reachable && !m.nodes.empty()) {
      view = &m;
      break;
    }
  }
  if (view == nullptr) return;
  for (int s = 0; s < protocol::kSlotCount; ++s) {
    if (disputed.count(static_cast<uint16_t>(s))) continue;
    const std::string_view owner = view->OwnerId(static_cast<uint16_t>(s));
    if (owner.empty()) continue;
    auto it = std::find(owner_ids_.begin(), owner_ids_.end(), owner);
    if (it == owner_ids_.end()) it = owner_ids_.insert(owner_ids_.end(), std::string(owner));
    last_owner_[s] = static_cast<int16_t>(it - owner_ids_.begin());
  }
}

std::vector<SlotVerdict> StuckDetector::Update(const ClusterSnapshot& snapshot) {
  const absl::Time now = Now();
  const std::set<uint16_t> disputed = snapshot.DisputedOrUnassignedSlots();
  RememberOwners(snapshot, disputed);
  std::set<uint16_t> slots = snapshot.OpenSlots();
  slots.insert(disputed.begin(), disputed.end());
  slots.insert(snapshot.counted_slots.begin(), snapshot.counted_slots.end());
  slots.insert(loop_slots_.begin(), loop_slots_.end());
  for (const auto& [slot, h] : history_) slots.insert(slot);

  std::vector<SlotVerdict> out;
  for (uint16_t slot : slots) {
    History& h = history_[slot];
    if (!disputed.count(slot)) {
      h.disputed_since = absl::InfinitePast();
    } else if (!Known(h.disputed_since)) {
      h.disputed_since = now;
    }
    if (loop_slots_.count(slot)) {
      h.last_loop_report = now;
      h.loop_pending = true;
    }
    const SlotAssessment a = AssessSlot(snapshot, slot, AssessOptionsFor(slot));
    const bool report = Track(slot, &h, a, now);
    if (report) out.push_back(Judge(snapshot, a, &h, now));
    h.loop_pending = false;
    if (!report) history_.erase(slot);
  }
  loop_slots_.clear();
  return out;
}

// Updates the slot's history with a new assessment. Returns false when the slot is stable and
// has nothing to report (its history is then dropped).
bool StuckDetector::Track(uint16_t slot, History* h, const SlotAssessment& a, absl::Time now) {
  if (a.signature == Signature::kStable) {
    if (Known(h->since)) {  // an episode just ended
      h->since = absl::InfinitePast();
      h->healthy_at = now;
    }
    return h->loop_pending ||
           (Known(h->healthy_at) && now - h->healthy_at < options_.healthy_again_hold);
  }
  const bool drain = a.action == PlanKind::kDrainThenStable;
  const int64_t from = drain ? a.keys_target : a.keys_source;
  const int64_t to = drain ? a.keys_source : a.keys_target;
  if (!Known(h->since)) {
    h->since = h->signature_since = h->last_progress = now;
    h->moved_at = absl::InfinitePast();
    h->healthy_at = absl::InfinitePast();
  } else if (a.signature != h->signature || a.source.id != h->source_id ||
             a.target.id != h->target_id) {
    h->signature_since = h->last_progress = h->moved_at = now;
  } else {
    const int64_t prev_from = drain ? h->keys_target : h->keys_source;
    const int64_t prev_to = drain ? h->keys_source : h->keys_target;
    const int64_t migrates = drain ? a.target_migrate_calls : a.source_migrate_calls;
    const int64_t prev_migrates = drain ? h->target_migrate_calls : h->source_migrate_calls;
    // Progress is someone MIGRATEing from the node keys move from, keys leaving it AND reaching
    // the other side in one interval (a tool that copies by RESTORE), or an epoch change. One
    // count moving alone is client traffic: new keys go to the target by ASK, keys expire or are
    // deleted on the source; on a busy slot that never stops, so it must not hold off a repair.
    const bool migrated = migrates >= 0 && prev_migrates >= 0 && migrates > prev_migrates;
    const bool from_fell = from >= 0 && prev_from >= 0 && from < prev_from;
    const bool to_grew = to >= 0 && prev_to >= 0 && to > prev_to;
    const bool epoch = (a.source_epoch != 0 && a.source_epoch != h->source_epoch) ||
                       (a.target_epoch != 0 && a.target_epoch != h->target_epoch);
    if (migrated || (from_fell && to_grew) || epoch) h->last_progress = h->moved_at = now;
  }
  h->signature = a.signature;
  h->source_id = a.source.id;
  h->target_id = a.target.id;
  if (a.keys_source >= 0) h->keys_source = a.keys_source;
  if (a.keys_target >= 0) h->keys_target = a.keys_target;
  if (a.source_epoch != 0) h->source_epoch = a.source_epoch;
  if (a.target_epoch != 0) h->target_epoch = a.target_epoch;
  if (a.source_migrate_calls >= 0) h->source_migrate_calls = a.source_migrate_calls;
  if (a.target_migrate_calls >= 0) h->target_migrate_calls = a.target_migrate_calls;
  return true;
}

SlotVerdict StuckDetector::Judge(const ClusterSnapshot& snapshot, const SlotAssessment& a,
                                 History* h, absl::Time now) {
  SlotVerdict v;
  v.slot = a.slot;
  v.assessment = a;
  v.last_loop_report = h->last_loop_report;
  if (a.signature == Signature::kStable) {
    v.verdict = Known(h->healthy_at) ? Verdict::kHealthyAgain : Verdict::kHealthy;
    v.since = Known(h->healthy_at) ? h->healthy_at : now;
    v.why_not_stuck = h->loop_pending ? "a redirect loop was reported, but the slot is stable "
                                        "in every view"
                                      : "stable again in every view";
    return v;
  }
  v.since = h->since;
  v.signature_since = h->signature_since;
  v.last_progress = h->last_progress;
  const absl::Duration stalled = now - std::max(h->signature_since, h->last_progress);
  v.stalled_seconds = Seconds(stalled);
  if (a.signature == Signature::kGossipSettling) {
    v.verdict = Verdict::kWaiting;
    v.why_not_stuck = "views are settling by gossip";
  } else if (Known(h->moved_at) && now - h->moved_at < options_.progress_hold) {
    v.verdict = Verdict::kProgressing;
    v.why_not_stuck = StrCat(
        "moved ", absl::FormatDuration(absl::Trunc(now - h->moved_at, absl::Milliseconds(1))),
        " ago (keys, epoch or signature)");
  } else if (stalled < options_.stall_timeout) {
    v.verdict = Verdict::kObserving;
    v.why_not_stuck =
        StrCat("unchanged for ", absl::FormatDuration(absl::Trunc(stalled, absl::Milliseconds(1))),
               " of the ", absl::FormatDuration(options_.stall_timeout), " stall timeout");
  } else if (!PassesGates(snapshot, a, &v)) {
    v.verdict = Verdict::kObserving;
  } else {
    v.verdict = Verdict::kStuck;
    v.stuck_seconds = v.stalled_seconds;
  }
  return v;
}

// The conditions besides time (MIGRATION.md C.2 step 2): all masters healthy, complete counts,
// a source that answers promptly (it may be inside someone's MIGRATE), no foreign lease.
bool StuckDetector::PassesGates(const ClusterSnapshot& snapshot, const SlotAssessment& a,
                                SlotVerdict* v) {
  std::string why;
  if (!snapshot.AllMastersHealthy(&why)) {
    v->why_not_stuck = StrCat("not judging while the cluster is unhealthy: ", why);
    return false;
  }
  if (!a.complete) {
    v->why_not_stuck = "key counts of the slot are incomplete this poll";
    return false;
  }
  if (MovesKeys(a.action)) {
    const NodeRef& from = a.action == PlanKind::kDrainThenStable ? a.target : a.source;
    const MasterView* m = snapshot.MasterById(from.id);
    if (m == nullptr || m->poll_duration > options_.slow_source) {
      v->why_not_stuck =
          StrCat("source ", from.ToString(), " answered the last poll slowly (",
                 m == nullptr ? std::string("unknown") : absl::FormatDuration(m->poll_duration),
                 "): it may be blocked inside someone's MIGRATE; backing off");
      return false;
    }
  }
  if (options_.lease_holder) {
    const std::string holder = options_.lease_holder(a.slot);
    const bool ours = holder == options_.self_id ||
                      (!options_.self_id.empty() && holder.rfind(options_.self_id + ":", 0) == 0);
    if (!holder.empty() && !ours) {
      v->lease_holder = holder;
      v->why_not_stuck = StrCat("lease held by ", holder, ": another watcher is acting");
      return false;
    }
  }
  return true;
}

}  // namespace slotpilot::migration
