#include "migration/watcher.h"

#include <algorithm>
#include <utility>

#include "protocol/strings.h"
#include "spdlog/spdlog.h"

namespace slotpilot::migration {
namespace {

constexpr std::string_view kComponent = "watcher";
constexpr uint32_t kReportedFlags =
    protocol::kFlagFail | protocol::kFlagPfail | protocol::kFlagHandshake | protocol::kFlagNoAddr;

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

void AppendAuditValue(std::string* out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out->append(v.data(), v.size());
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      out->append("\\n");
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

std::string FlagNames(uint32_t flags) {
  std::string out;
  auto add = [&](uint32_t bit, std::string_view name) {
    if ((flags & bit) != 0) StrAppend(&out, out.empty() ? "" : ",", name);
  };
  add(protocol::kFlagFail, "fail");
  add(protocol::kFlagPfail, "fail?");
  add(protocol::kFlagHandshake, "handshake");
  add(protocol::kFlagNoAddr, "noaddr");
  return out;
}

std::string Address(const NodeRef& n) {
  if (n.empty()) return "";
  return n.known() ? n.endpoint.ToString() : n.id;
}

std::vector<std::string> StepTexts(const std::vector<PlanStep>& steps) {
  std::vector<std::string> out;
  out.reserve(steps.size());
  for (const PlanStep& s : steps) out.push_back(s.text);
  return out;
}

int ReportRank(Verdict v) {
  switch (v) {
    case Verdict::kStuck:
      return 0;
    case Verdict::kHealthy:
    case Verdict::kHealthyAgain:
      return 2;
    default:
      return 1;
  }
}

// The verdicts a status reports: at most `cap`, most urgent first, then sorted by slot.
std::vector<const SlotVerdict*> Reported(const std::vector<SlotVerdict>& verdicts, size_t cap) {
  std::vector<const SlotVerdict*> out;
  for (const SlotVerdict& v : verdicts) out.push_back(&v);
  if (out.size() > cap) {
    std::stable_sort(out.begin(), out.end(), [](const SlotVerdict* a, const SlotVerdict* b) {
      return ReportRank(a->verdict) < ReportRank(b->verdict);
    });
    out.resize(cap);
    std::sort(out.begin(), out.end(),
              [](const SlotVerdict* a, const SlotVerdict* b) { return a->slot < b->slot; });
  }
  return out;
}

const SlotVerdict* FindVerdict(const std::vector<SlotVerdict>& verdicts, uint16_t slot) {
  for (const SlotVerdict& v : verdicts) {
    if (v.slot == slot) return &v;
  }
  return nullptr;
}

MasterHealth HealthOf(const MasterView& m) {
  MasterHealth h;
  h.address = m.endpoint.ToString();
  h.id = m.id;
  h.reachable = m.reachable;
  h.error = m.error;
  h.loading = m.loading;
  h.cluster_state = m.info.state;
  h.slots_assigned = m.info.slots_assigned;
  h.slots_ok = m.info.slots_ok;
  h.slots_pfail = m.info.slots_pfail;
  h.slots_fail = m.info.slots_fail;
  h.config_epoch = m.config_epoch;
  h.current_epoch = m.info.current_epoch;
  h.used_memory = m.memory.used_memory;
  h.maxmemory = m.memory.maxmemory;
  h.maxmemory_policy = m.memory.maxmemory_policy;
  h.flags_seen_by_others = FlagNames(m.flags_seen_by_others);
  h.poll_ms = absl::ToDoubleMilliseconds(m.poll_duration);
  return h;
}

}  // namespace

// --- Names and audit ----------------------------------------------------------------------------

std::string_view RepairKindName(RepairKind k) {
  return k == RepairKind::kRollback ? "rollback" : "finish";
}

std::string_view RepairResultName(RepairOutcome::Result r) {
  switch (r) {
    case RepairOutcome::Result::kDone:
      return "done";
    case RepairOutcome::Result::kNothingToDo:
      return "nothing-to-do";
    case RepairOutcome::Result::kDeferred:
      return "deferred";
    case RepairOutcome::Result::kFailed:
      return "failed";
  }
  return "failed";
}

std::string AuditLine(std::string_view component, std::string_view event,
                      std::initializer_list<AuditField> fields) {
  std::string out = StrCat("audit component=", component, " event=", event);
  for (const AuditField& f : fields) {
    StrAppend(&out, " ", f.key, "=");
    AppendAuditValue(&out, f.value);
  }
  return out;
}

void Audit(std::string_view component, std::string_view event,
           std::initializer_list<AuditField> fields) {
  spdlog::info("{}", AuditLine(component, event, fields));
}

std::string_view WatcherModeName(WatcherMode m) {
  switch (m) {
    case WatcherMode::kOff:
      return "off";
    case WatcherMode::kObserve:
      return "observe";
    case WatcherMode::kFinish:
      return "finish";
  }
  return "observe";
}

bool ParseWatcherMode(std::string_view text, WatcherMode* mode) {
  for (WatcherMode m : {WatcherMode::kOff, WatcherMode::kObserve, WatcherMode::kFinish}) {
    if (EqualsIgnoreCase(text, WatcherModeName(m))) {
      *mode = m;
      return true;
    }
  }
  return false;
}

const SlotStatus* WatcherStatus::Find(uint16_t slot) const {
  for (const SlotStatus& s : slots) {
    if (s.slot == slot) return &s;
  }
  return nullptr;
}

// --- Watcher: lifecycle and requests ------------------------------------------------------------

Watcher::Watcher(WatcherOptions options, SlotRepairer* repairer)
    : options_(std::move(options)),
      repairer_(repairer),
      mode_(options_.mode),
      view_(options_.view),
      detector_(options_.detector),
      rng_(std::random_device{}()) {
  auto status = std::make_shared<WatcherStatus>();
  status->mode = options_.mode;
  status_ = std::move(status);
}

Watcher::~Watcher() { Stop(); }

void Watcher::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  Audit(kComponent, "start", {{"mode", WatcherModeName(mode())}});
  thread_ = std::thread([this] { Loop(); });
}

void Watcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    Audit(kComponent, "stop", {});
  }
}

void Watcher::SetMode(WatcherMode mode) {
  const WatcherMode old = mode_.exchange(mode);
  if (old == mode) return;
  Audit(kComponent, "mode", {{"from", WatcherModeName(old)}, {"to", WatcherModeName(mode)}});
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

absl::Status Watcher::ValidateAction(uint16_t slot, RepairKind kind) const {
  if (slot >= protocol::kSlotCount) return absl::InvalidArgumentError("slot must be in 0..16383");
  if (mode() == WatcherMode::kOff) return absl::FailedPreconditionError("the watcher is off");
  if (pending_actions_.size() >= options_.max_pending_actions) {
    return absl::ResourceExhaustedError("too many queued actions");
  }
  const SlotStatus* s = status_->Find(slot);
  if (s == nullptr) {
    // Before the first poll nothing is known: accept, the iteration re-assesses anyway.
    if (status_->poll_count == 0) return absl::OkStatus();
    return absl::NotFoundError(AsAbsl(StrCat("slot ", slot, " is stable in every view")));
  }
  if (kind == RepairKind::kRollback && s->rollback.empty()) {
    return absl::FailedPreconditionError(
        AsAbsl(StrCat("no rollback for slot ", slot, " (", s->signature, ")")));
  }
  if (kind == RepairKind::kFinish && !s->repairable) {
    return absl::FailedPreconditionError(AsAbsl(StrCat(
        "nothing to run for slot ", slot, ": ", s->signature, " (plan: ", s->plan_kind, ")")));
  }
  return absl::OkStatus();
}

absl::Status Watcher::RequestAction(uint16_t slot, RepairKind kind) {
  std::unique_lock<std::mutex> lock(mu_);
  absl::Status valid = ValidateAction(slot, kind);
  if (!valid.ok()) {
    ++rejected_;
    lock.unlock();
    Audit(kComponent, "action_rejected",
          {{"slot", slot},
           {"kind", RepairKindName(kind)},
           {"why", std::string(AsStd(valid.message()))}});
    return valid;
  }
  std::erase_if(pending_actions_, [&](const Action& a) { return a.slot == slot; });
  pending_actions_.push_back(Action{slot, kind, true});
  wake_ = true;
  lock.unlock();
  cv_.notify_all();
  Audit(kComponent, "action_requested", {{"slot", slot}, {"kind", RepairKindName(kind)}});
  return absl::OkStatus();
}

void Watcher::OnLoopEvidence(uint16_t slot) {
  if (slot >= protocol::kSlotCount || mode() == WatcherMode::kOff) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++loop_reports_;
    // Bounded: at most one entry per slot, drained every poll.
    if (!pending_loops_.insert(slot).second && wake_) return;
    wake_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<const WatcherStatus> Watcher::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

// --- Watcher: the loop --------------------------------------------------------------------------

void Watcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    const absl::Time started = absl::Now();  // pacing uses real time, whatever the clock option
    const absl::Duration next = RunOnce();
    lock.lock();
    cv_.wait_for(lock, absl::ToChronoMilliseconds(next), [this] { return stop_ || wake_; });
    wake_ = false;
    const absl::Duration gap = options_.min_poll_gap - (absl::Now() - started);
    if (!stop_ && gap > absl::ZeroDuration()) {
      cv_.wait_for(lock, absl::ToChronoMilliseconds(gap), [this] { return stop_; });
    }
  }
}

absl::Time Watcher::Now() const {
  return options_.detector.clock ? options_.detector.clock() : absl::Now();
}

absl::Duration Watcher::Jittered(absl::Duration d) {
  const double j = std::clamp(options_.jitter, 0.0, 0.9);
  std::uniform_real_distribution<double> factor(1.0 - j, 1.0 + j);
  return d * factor(rng_);
}

std::set<uint16_t> Watcher::TakeLoopEvidence() {
  std::set<uint16_t> slots;
  {
    std::lock_guard<std::mutex> lock(mu_);
    slots.swap(pending_loops_);
  }
  std::string listed;  // one audit line per poll, naming at most 32 slots
  for (uint16_t s : slots) {
    detector_.OnLoopEvidence(s);
    if (listed.size() < 32 * 6) StrAppend(&listed, listed.empty() ? "" : ",", s);
  }
  if (slots.empty()) return slots;
  last_evidence_ = Now();
  Audit(kComponent, "loop_evidence", {{"count", slots.size()}, {"slots", listed}});
  return slots;
}

absl::Duration Watcher::RunOnce() {
  if (mode() == WatcherMode::kOff) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_actions_.clear();
      pending_loops_.clear();
    }
    // Whatever happened while off was not observed: histories restart when switched back on.
    detector_ = StuckDetector(options_.detector);
    last_verdicts_.clear();
    last_verdict_.clear();
    Publish(nullptr, last_verdicts_, options_.slow_interval);
    return options_.slow_interval;
  }
  std::set<uint16_t> extra = TakeLoopEvidence();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Action& a : pending_actions_) extra.insert(a.slot);
  }
  absl::StatusOr<ClusterSnapshot> snapshot = view_.Poll(extra);
  if (!snapshot.ok()) {
    ++counters_.poll_failures;
    last_poll_error_ = std::string(AsStd(snapshot.status().message()));
    Audit(kComponent, "poll_failed", {{"error", last_poll_error_}});
    const absl::Duration next = Jittered(options_.slow_interval);
    Publish(nullptr, last_verdicts_, next);
    return next;
  }
  ++poll_count_;
  ++counters_.polls;
  last_poll_error_.clear();
  std::vector<SlotVerdict> verdicts = detector_.Update(*snapshot);
  AuditVerdicts(verdicts);
  last_verdicts_ = verdicts;
  Act(*snapshot, verdicts);
  const absl::Duration next =
      Jittered(WantFast(verdicts) ? options_.fast_interval : options_.slow_interval);
  Publish(&*snapshot, verdicts, next);
  return next;
}

bool Watcher::WantFast(const std::vector<SlotVerdict>& verdicts) const {
  for (const SlotVerdict& v : verdicts) {
    if (v.verdict != Verdict::kHealthy && v.verdict != Verdict::kHealthyAgain) return true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return !pending_actions_.empty() || !pending_loops_.empty() ||
         (last_evidence_ != absl::InfinitePast() &&
          Now() - last_evidence_ < options_.fast_after_evidence);
}

void Watcher::AuditVerdicts(const std::vector<SlotVerdict>& verdicts) {
  std::map<uint16_t, std::string> seen;
  size_t audited = 0;
  size_t suppressed = 0;
  for (const SlotVerdict& v : verdicts) {
    const SlotAssessment& a = v.assessment;
    std::string key = StrCat(VerdictName(v.verdict), "/", SignatureName(a.signature));
    auto it = last_verdict_.find(v.slot);
    const bool changed = it == last_verdict_.end() || it->second != key;
    if (changed) ++counters_.verdicts[std::string(VerdictName(v.verdict))];
    if (changed && audited >= options_.max_verdict_audits_per_poll) {
      ++suppressed;
    } else if (changed) {
      ++audited;
      Audit(kComponent, "verdict",
            {{"slot", v.slot},
             {"verdict", VerdictName(v.verdict)},
             {"signature", SignatureName(a.signature)},
             {"scenario", ScenarioTag(a.signature)},
             {"source", Address(a.source)},
             {"target", Address(a.target)},
             {"keys_source", a.keys_source},
             {"keys_target", a.keys_target},
             {"action", PlanKindName(a.action)},
             {"mode", WatcherModeName(mode())},
             {"reason", a.reason},
             {"why_not_stuck", v.why_not_stuck},
             {"plan", v.verdict == Verdict::kStuck ? a.PlanText() : std::string()}});
    }
    seen[v.slot] = std::move(key);
  }
  last_verdict_ = std::move(seen);
  if (suppressed > 0) Audit(kComponent, "verdicts_suppressed", {{"count", suppressed}});
}

// --- Watcher: acting ----------------------------------------------------------------------------

// At most one repair per iteration, so that every decision starts from a fresh poll: manual
// requests first, then (finish mode) the first stuck slot with a repairable plan whose backoff
// has expired.
bool Watcher::NextAction(const std::vector<SlotVerdict>& verdicts, Action* action) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_actions_.empty()) {
      *action = pending_actions_.front();
      pending_actions_.pop_front();
      if (!pending_actions_.empty()) wake_ = true;
      return true;
    }
  }
  if (mode() != WatcherMode::kFinish) return false;
  const absl::Time now = Now();
  for (const SlotVerdict& v : verdicts) {
    if (v.verdict != Verdict::kStuck || !IsRepairable(v.assessment.action)) continue;
    auto retry = retry_after_.find(v.slot);
    if (retry != retry_after_.end() && now < retry->second.first) continue;
    *action = Action{v.slot, RepairKind::kFinish, false};
    return true;
  }
  return false;
}

void Watcher::Act(const ClusterSnapshot& snapshot, const std::vector<SlotVerdict>& verdicts) {
  Action action{};
  if (!NextAction(verdicts, &action)) return;
  const SlotVerdict* v = FindVerdict(verdicts, action.slot);
  const SlotAssessment a =
      v != nullptr ? v->assessment
                   : AssessSlot(snapshot, action.slot, detector_.AssessOptionsFor(action.slot));
  const bool runnable =
      action.kind == RepairKind::kRollback ? !a.rollback.empty() : IsRepairable(a.action);
  if (!runnable) {
    RepairOutcome none;
    none.result = RepairOutcome::Result::kNothingToDo;
    none.summary = StrCat("slot is now ", SignatureName(a.signature), ": nothing to ",
                          RepairKindName(action.kind));
    last_outcome_[action.slot] = LastOutcome{action.kind, none, Now()};
    ++counters_.actions_deferred;
    Audit(kComponent, "action_skipped",
          {{"slot", action.slot},
           {"kind", RepairKindName(action.kind)},
           {"signature", SignatureName(a.signature)},
           {"why", none.summary}});
    return;
  }
  RunRepair(snapshot, a, action);
}

void Watcher::RunRepair(const ClusterSnapshot& snapshot, const SlotAssessment& a, Action action) {
  const std::string plan = action.kind == RepairKind::kRollback ? a.RollbackText() : a.PlanText();
  Audit(kComponent, "repair_start",
        {{"slot", action.slot},
         {"kind", RepairKindName(action.kind)},
         {"manual", action.manual},
         {"signature", SignatureName(a.signature)},
         {"source", Address(a.source)},
         {"target", Address(a.target)},
         {"plan", plan}});
  ++counters_.actions_started;
  running_ = StrCat("running ", RepairKindName(action.kind), ": ", plan);
  running_slot_ = action.slot;
  Publish(&snapshot, last_verdicts_, absl::ZeroDuration());
  RepairOutcome out;
  if (repairer_ == nullptr) {
    out.result = RepairOutcome::Result::kDeferred;
    out.summary = "no repairer configured";
  } else {
    out = repairer_->Repair(action.slot, a, action.kind);
  }
  running_.clear();
  counters_.keys_moved += static_cast<uint64_t>(std::max<int64_t>(0, out.keys_moved));
  counters_.bytes_moved += static_cast<uint64_t>(std::max<int64_t>(0, out.bytes_moved));
  if (out.success()) {
    ++counters_.actions_succeeded;
    ++generation_[action.slot];
    retry_after_.erase(action.slot);
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;  // verify the result with a fresh poll soon
  } else {
    ++(out.result == RepairOutcome::Result::kFailed ? counters_.actions_failed
                                                    : counters_.actions_deferred);
    if (!action.manual) {
      auto& [when, failures] = retry_after_[action.slot];
      failures = std::min(failures + 1, 5);
      when = Now() + options_.retry_backoff * (1 << (failures - 1));
    }
  }
  last_outcome_[action.slot] = LastOutcome{action.kind, out, Now()};
  Audit(kComponent, "repair_end",
        {{"slot", action.slot},
         {"kind", RepairKindName(action.kind)},
         {"result", RepairResultName(out.result)},
         {"mutated", out.mutated},
         {"keys_moved", out.keys_moved},
         {"bytes_moved", out.bytes_moved},
         {"generation", generation_[action.slot]},
         {"summary", out.summary},
         {"error", out.error}});
}

// --- Watcher: publishing ------------------------------------------------------------------------

SlotStatus Watcher::MakeSlotStatus(const SlotVerdict& v) const {
  const SlotAssessment& a = v.assessment;
  SlotStatus s;
  s.slot = v.slot;
  s.signature = std::string(SignatureName(a.signature));
  s.scenario = std::string(ScenarioTag(a.signature));
  s.verdict = std::string(VerdictName(v.verdict));
  s.reason = a.reason;
  s.why_not_stuck = v.why_not_stuck;
  s.plan_kind = std::string(PlanKindName(a.action));
  s.repairable = IsRepairable(a.action);
  s.plan = StepTexts(a.plan);
  s.rollback = StepTexts(a.rollback);
  s.source = Address(a.source);
  s.source_id = a.source.id;
  s.target = Address(a.target);
  s.target_id = a.target.id;
  s.keys_source = a.keys_source;
  s.keys_target = a.keys_target;
  for (const auto& [id, k] : a.keys_elsewhere) s.keys_elsewhere += std::max<int64_t>(0, k);
  s.since = v.since;
  s.last_progress = v.last_progress;
  s.stalled_seconds = v.stalled_seconds;
  s.stuck_seconds = v.stuck_seconds;
  s.lease_holder = v.lease_holder;
  s.last_loop_report = v.last_loop_report;
  auto gen = generation_.find(v.slot);
  s.repair_generation = gen == generation_.end() ? 0 : gen->second;
  auto last = last_outcome_.find(v.slot);
  if (!running_.empty() && running_slot_ == v.slot) {
    s.action = running_;
    if (s.lease_holder.empty()) s.lease_holder = options_.detector.self_id;
  } else if (last != last_outcome_.end() &&
             (last->second.at >= v.since || v.verdict == Verdict::kHealthyAgain)) {
    s.action =
        StrCat(RepairKindName(last->second.kind), " ",
               RepairResultName(last->second.outcome.result), ": ", last->second.outcome.summary);
  } else if (!IsRepairable(a.action)) {
    s.action = a.plan.empty() ? std::string("none") : a.PlanText();
  } else {
    s.action = StrCat(mode() == WatcherMode::kFinish ? "plan: " : "would run: ", a.PlanText());
  }
  return s;
}

void Watcher::Publish(const ClusterSnapshot* snapshot, const std::vector<SlotVerdict>& verdicts,
                      absl::Duration next) {
  auto status = std::make_shared<WatcherStatus>();
  status->mode = mode();
  status->updated_at = Now();
  status->poll_count = poll_count_;
  status->last_poll_error = last_poll_error_;
  status->next_poll_in = next;
  for (const SlotVerdict* v : Reported(verdicts, options_.max_reported_slots)) {
    status->slots.push_back(MakeSlotStatus(*v));
  }
  status->slots_omitted = verdicts.size() - status->slots.size();
  status->counters = counters_;
  status->repair_generation = generation_;
  for (const auto& [slot, g] : generation_) status->repairs_completed += g;
  std::shared_ptr<const WatcherStatus> previous = Status();
  if (snapshot != nullptr) {
    status->cluster_healthy = snapshot->AllMastersHealthy(&status->unhealthy_reason);
    for (const MasterView& m : snapshot->masters) {
      status->masters.push_back(HealthOf(m));
      for (const protocol::ClusterNode& n : m.nodes) {
        if (n.has(protocol::kFlagMyself) || (n.flags & kReportedFlags) == 0) continue;
        status->flagged_nodes.push_back(FlaggedNode{n.id, StrCat(n.host, ":", n.port),
                                                    FlagNames(n.flags), m.endpoint.ToString()});
      }
    }
    status->replicas = snapshot->replicas;
    for (uint16_t slot : snapshot->OpenSlots()) {
      const SlotVerdict* v = FindVerdict(verdicts, slot);
      const double age = v == nullptr || v->since == absl::InfinitePast()
                             ? 0
                             : absl::ToDoubleSeconds(status->updated_at - v->since);
      status->open_slots.push_back(OpenSlotAge{
          slot, age, v == nullptr ? "" : std::string(SignatureName(v->assessment.signature))});
    }
  } else if (status->mode != WatcherMode::kOff) {  // poll failed: keep the last health seen
    status->cluster_healthy = false;
    status->unhealthy_reason = last_poll_error_;
    status->masters = previous->masters;
    status->replicas = previous->replicas;
    status->flagged_nodes = previous->flagged_nodes;
    status->open_slots = previous->open_slots;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    status->counters.loop_reports = loop_reports_;
    status->counters.actions_rejected = rejected_;
    status_ = status;
  }
  if (options_.on_publish) options_.on_publish(status);
}

}  // namespace slotpilot::migration
