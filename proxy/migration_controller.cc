#include "proxy/migration_controller.h"

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "protocol/strings.h"
#include "proxy/logging.h"

namespace slotpilot::proxy {
namespace {

using nlohmann::json;

json Time(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return nullptr;
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

json SlotJson(const migration::SlotStatus& s) {
  return {{"slot", s.slot},
          {"source", s.source},
          {"source_id", s.source_id},
          {"target", s.target},
          {"target_id", s.target_id},
          {"verdict", s.verdict},
          {"signature", s.signature},
          {"scenario", s.scenario},
          {"reason", s.reason},
          {"why_not_stuck", s.why_not_stuck},
          {"action", s.action},
          {"plan_kind", s.plan_kind},
          {"repairable", s.repairable},
          {"plan", s.plan},
          {"rollback", s.rollback},
          {"keys_source", s.keys_source},
          {"keys_target", s.keys_target},
          {"keys_elsewhere", s.keys_elsewhere},
          {"since", Time(s.since)},
          {"last_progress", Time(s.last_progress)},
          {"stalled_seconds", s.stalled_seconds},
          {"stuck_seconds", s.stuck_seconds},
          {"lease_holder", s.lease_holder},
          {"last_loop_report", Time(s.last_loop_report)},
          {"repair_generation", s.repair_generation}};
}

}  // namespace

MigrationController::MigrationController(MigrationControllerOptions options, PublishState publish,
                                         CurrentTopology topology)
    : options_(std::move(options)), publish_(std::move(publish)), topology_(std::move(topology)) {
  migration::ClusterViewOptions view;
  view.seeds = options_.seeds;
  view.client = options_.client;
  finisher_view_ = std::make_unique<migration::ClusterView>(view);
  migration::LeaseOptions lease;
  lease.sidecar_id = options_.sidecar_id;
  migration::ClusterView* fv = finisher_view_.get();
  lease_ = std::make_unique<migration::Lease>(
      lease, [fv](const migration::Endpoint& e) { return fv->Client(e); });
  finisher_ = std::make_unique<migration::Finisher>(fv, lease_.get(), options_.finisher);

  migration::WatcherOptions w;
  w.mode = options_.mode;
  w.view = view;
  w.detector.stall_timeout = options_.stall_timeout;
  w.detector.self_id = options_.sidecar_id;
  w.detector.lease_holder = [this](uint16_t slot) { return LeaseHolder(slot); };
  w.detector.previous_owner = [this](uint16_t slot) { return PreviousOwner(slot); };
  w.on_publish = [this](const std::shared_ptr<const migration::WatcherStatus>& s) { OnPublish(s); };
  watcher_ = std::make_unique<migration::Watcher>(std::move(w), finisher_.get());
}

MigrationController::~MigrationController() { Stop(); }

void MigrationController::Start() { watcher_->Start(); }

void MigrationController::Stop() {
  if (finisher_ != nullptr) finisher_->Cancel();  // a repair in flight stops before its next step
  if (watcher_ != nullptr) watcher_->Stop();
}

void MigrationController::SetMode(migration::WatcherMode mode) { watcher_->SetMode(mode); }

void MigrationController::OnLoopEvidence(uint16_t slot) { watcher_->OnLoopEvidence(slot); }

absl::Status MigrationController::RequestAction(uint16_t slot, const std::string& action) {
  migration::RepairKind kind =
      action == "rollback" ? migration::RepairKind::kRollback : migration::RepairKind::kFinish;
  if (slot == migration::Lease::ControlSlot()) {
    return absl::FailedPreconditionError("the watcher's own control slot is never repaired by it");
  }
  return watcher_->RequestAction(slot, kind);
}

// Watcher thread: the lease tells who else may act; it is pointed at the master the proxy's own
// topology says owns the control slot (the finisher re-points it from its fresh polls).
std::string MigrationController::LeaseHolder(uint16_t slot) {
  if (TopologySnapshot t = topology_()) {
    int16_t m = t->slot_master[migration::Lease::ControlSlot()];
    if (m >= 0) lease_->SetControlEndpoint({t->masters[m].host, t->masters[m].port});
  }
  // The lease's real holder, else the sidecar we defer to by rendezvous hashing: both keep us
  // from acting, but only the first holds the lease, so /v1/migrations tells them apart.
  std::string holder = lease_->OtherActor(slot, /*rendezvous=*/false);
  if (!holder.empty()) return holder;
  std::string preferred = lease_->OtherActor(slot);
  return preferred.empty() ? preferred : StrCat("preferred:", preferred);
}

std::string MigrationController::PreviousOwner(uint16_t slot) const {
  TopologySnapshot t = topology_();
  if (t == nullptr || t->slot_master[slot] < 0) return "";
  return t->masters[t->slot_master[slot]].id;
}

// Watcher thread: the open slots the workers throttle for. A slot whose repair committed in this
// round is left out at once (the poll behind `status` predates the repair), so the throttle on
// its source lifts without waiting for the next poll. The source comes from the watcher's
// assessment, else from the proxy's topology (the owner is the source of an open slot).
std::vector<MigrationState::OpenSlot> MigrationController::OpenSlots(
    const migration::WatcherStatus& status) const {
  std::vector<MigrationState::OpenSlot> out;
  TopologySnapshot topology = topology_();
  for (const migration::OpenSlotAge& o : status.open_slots) {
    auto gen = status.repair_generation.find(o.slot);
    auto seen = published_generation_.find(o.slot);
    uint32_t published = seen == published_generation_.end() ? 0 : seen->second;
    if (gen != status.repair_generation.end() && gen->second != published) continue;
    MigrationState::OpenSlot slot;
    slot.slot = o.slot;
    const migration::SlotStatus* st = status.Find(o.slot);
    std::string source = st == nullptr ? "" : st->source;
    size_t colon = source.rfind(':');
    int port = 0;
    if (colon != std::string::npos && ParseInt(std::string_view(source).substr(colon + 1), &port) &&
        port > 0 && port < 65536) {
      slot.source_host = source.substr(0, colon);
      slot.source_port = static_cast<uint16_t>(port);
    } else if (topology != nullptr && topology->slot_master[o.slot] >= 0) {
      const TopologyNode& owner = topology->masters[topology->slot_master[o.slot]];
      slot.source_host = owner.host;
      slot.source_port = owner.port;
    }
    if (st != nullptr) slot.target = st->target;
    out.push_back(std::move(slot));
  }
  return out;
}

// Watcher thread, after every poll: a new MigrationState for the workers when a repair completed
// (requests held on the repaired slots retry at once) or the set of open slots changed (the
// throttle starts or lifts).
void MigrationController::OnPublish(const std::shared_ptr<const migration::WatcherStatus>& status) {
  std::vector<MigrationState::OpenSlot> open = OpenSlots(*status);
  bool repaired = status->repairs_completed != published_repairs_;
  if (state_version_ != 0 && !repaired && open == published_open_) return;
  published_repairs_ = status->repairs_completed;
  published_generation_ = status->repair_generation;
  published_open_ = open;
  auto state = std::make_shared<MigrationState>();
  state->version = ++state_version_;
  for (const auto& [slot, generation] : status->repair_generation) {
    state->repair_generation[slot] = generation;
  }
  state->open_slots = std::move(open);
  state->owners_changed = repaired;
  publish_(std::move(state));
}

std::string MigrationController::MigrationsJson() const {
  auto s = watcher_->Status();
  json list = json::array();
  for (const migration::SlotStatus& slot : s->slots) list.push_back(SlotJson(slot));
  return json{{"mode", std::string(migration::WatcherModeName(s->mode))},
              {"updated_at", Time(s->updated_at)},
              {"cluster_healthy", s->cluster_healthy},
              {"unhealthy_reason", s->unhealthy_reason},
              {"last_poll_error", s->last_poll_error},
              {"slots_omitted", s->slots_omitted},
              {"migrations", list}}
             .dump() + "\n";
}

std::string MigrationController::ClusterJson() const {
  auto s = watcher_->Status();
  json masters = json::array();
  for (const migration::MasterHealth& m : s->masters) {
    masters.push_back({{"address", m.address}, {"id", m.id}, {"reachable", m.reachable},
                       {"error", m.error}, {"loading", m.loading}, {"cluster_state", m.cluster_state},
                       {"slots_assigned", m.slots_assigned}, {"slots_ok", m.slots_ok},
                       {"slots_pfail", m.slots_pfail}, {"slots_fail", m.slots_fail},
                       {"config_epoch", m.config_epoch}, {"current_epoch", m.current_epoch},
                       {"used_memory", m.used_memory}, {"maxmemory", m.maxmemory},
                       {"maxmemory_policy", m.maxmemory_policy}, {"flags", m.flags_seen_by_others},
                       {"poll_ms", m.poll_ms}});
  }
  json replicas = json::array();
  for (const migration::ReplicaView& r : s->replicas) {
    replicas.push_back({{"address", r.endpoint.ToString()}, {"id", r.id}, {"master_id", r.master_id},
                        {"reachable", r.reachable}, {"master_link_status", r.link_status}});
  }
  json flagged = json::array();
  for (const migration::FlaggedNode& f : s->flagged_nodes) {
    flagged.push_back({{"id", f.id}, {"address", f.address}, {"flags", f.flags}, {"seen_by", f.seen_by}});
  }
  json open = json::array();
  for (const migration::OpenSlotAge& o : s->open_slots) {
    open.push_back({{"slot", o.slot}, {"age_seconds", o.age_seconds}, {"signature", o.signature}});
  }
  json stuck = json::array();
  for (const migration::SlotStatus& slot : s->slots) {
    if (slot.verdict == "stuck") stuck.push_back({{"slot", slot.slot}, {"stuck_seconds", slot.stuck_seconds}});
  }
  return json{{"healthy", s->cluster_healthy}, {"unhealthy_reason", s->unhealthy_reason},
              {"updated_at", Time(s->updated_at)}, {"masters", masters}, {"replicas", replicas},
              {"flagged_nodes", flagged}, {"open_slots", open}, {"stuck", stuck}}
             .dump() + "\n";
}

std::string MigrationController::OpenSlotsJson() const {
  auto s = watcher_->Status();
  json open = json::array();
  for (const migration::OpenSlotAge& o : s->open_slots) {
    json entry = {{"slot", o.slot}, {"age_seconds", o.age_seconds}, {"signature", o.signature}};
    if (const migration::SlotStatus* st = s->Find(o.slot)) {
      entry["source"] = st->source;
      entry["target"] = st->target;
      entry["verdict"] = st->verdict;
    }
    open.push_back(entry);
  }
  return open.dump();
}

WatcherMetrics MigrationController::Metrics() const {
  auto s = watcher_->Status();
  WatcherMetrics m;
  m.enabled = s->mode != migration::WatcherMode::kOff;
  m.mode = std::string(migration::WatcherModeName(s->mode));
  m.polls = s->counters.polls;
  m.poll_failures = s->counters.poll_failures;
  m.open_slots = s->open_slots.size();
  m.verdicts = s->counters.verdicts;
  m.actions_started = s->counters.actions_started;
  m.actions_succeeded = s->counters.actions_succeeded;
  m.actions_failed = s->counters.actions_failed;
  m.actions_deferred = s->counters.actions_deferred;
  m.keys_moved = s->counters.keys_moved;
  m.bytes_moved = s->counters.bytes_moved;
  m.cluster_healthy = s->cluster_healthy;
  m.masters = s->masters;
  m.replicas = s->replicas;
  m.flagged_nodes = s->flagged_nodes.size();
  m.open_slot_ages = s->open_slots;
  for (const migration::SlotStatus& slot : s->slots) {
    if (slot.verdict == "stuck") {
      ++m.stuck_slots;
      m.stuck_seconds.emplace_back(slot.slot, slot.stuck_seconds);
    }
  }
  return m;
}

}  // namespace slotpilot::proxy
