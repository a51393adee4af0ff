#include "proxy/topology_refresher.h"

#include <algorithm>

#include "protocol/strings.h"
#include "protocol/topology.h"
#include "proxy/logging.h"

namespace slotpilot::proxy {
namespace {

constexpr int kFollowUps = 6;

bool SameLayout(const Topology& a, const Topology& b) {
  if (a.slot_master != b.slot_master || a.masters.size() != b.masters.size()) return false;
  for (size_t i = 0; i < a.masters.size(); ++i) {
    if (a.masters[i].host != b.masters[i].host || a.masters[i].port != b.masters[i].port) return false;
  }
  return true;
}

std::string RedisVersionFromInfo(const std::string& info) {
  constexpr std::string_view kKey = "redis_version:";
  size_t at = info.find(kKey);
  if (at == std::string::npos) return "";
  size_t end = info.find_first_of("\r\n", at);
  return info.substr(at + kKey.size(), end == std::string::npos ? std::string::npos : end - at - kKey.size());
}

}  // namespace

TopologyRefresher::TopologyRefresher(uv_loop_t* loop, TopologyRefresherOptions options,
                                     Publish publish)
    : loop_(loop), options_(std::move(options)), publish_(std::move(publish)) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_async_init(loop_, &async_, OnAsync);
  async_.data = this;
}

TopologyRefresher::~TopologyRefresher() = default;

void TopologyRefresher::Start() {
  started_ = true;
  RefreshNow();
}

void TopologyRefresher::Stop() {
  started_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

void TopologyRefresher::RequestRefresh() {
  if (!requested_.exchange(true)) uv_async_send(&async_);
}

TopologySnapshot TopologyRefresher::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::vector<MasterHealth> TopologyRefresher::masters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return masters_;
}

// PINGs every master over a kept-open connection (reconnecting when needed).
void TopologyRefresher::CheckMasters(const Topology& topology) {
  std::vector<MasterHealth> health;
  absl::flat_hash_map<std::string, std::unique_ptr<migration::RedisClient>> keep;
  for (const TopologyNode& m : topology.masters) {
    MasterHealth h{m.Address(), m.id, false, ""};
    std::unique_ptr<migration::RedisClient> client;
    if (auto it = health_clients_.find(h.address); it != health_clients_.end() && it->second->ok()) {
      client = std::move(it->second);
    } else {
      auto connected = migration::RedisClient::Connect(m.host, m.port, options_.client);
      if (connected.ok()) client = *std::move(connected);
      else h.error = std::string(connected.status().message());
    }
    if (client != nullptr) {
      auto pong = client->Command({"PING"});
      if (pong.ok() && !pong->is_error()) {
        h.reachable = true;
      } else {
        h.error = pong.ok() ? pong->str : std::string(pong.status().message());
      }
      if (client->ok()) keep.emplace(h.address, std::move(client));
    }
    health.push_back(std::move(h));
  }
  health_clients_ = std::move(keep);
  std::lock_guard<std::mutex> lock(mu_);
  masters_ = std::move(health);
}

std::string TopologyRefresher::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void TopologyRefresher::OnAsync(uv_async_t* a) {
  auto* self = static_cast<TopologyRefresher*>(a->data);
  if (!self->started_) return;
  uv_update_time(self->loop_);
  uint64_t now = uv_now(self->loop_);
  uint64_t earliest = self->last_refresh_ms_ + self->options_.min_interval_ms;
  if (now >= earliest) {
    self->RefreshNow();
  } else {
    uint64_t due = earliest - now;
    // Coalesce: a pending periodic timer further away is pulled in, a nearer one is kept.
    if (uv_timer_get_due_in(&self->timer_) == 0 || uv_timer_get_due_in(&self->timer_) > due) {
      uv_timer_start(&self->timer_, OnTimer, due, 0);
    }
  }
}

void TopologyRefresher::OnTimer(uv_timer_t* t) {
  auto* self = static_cast<TopologyRefresher*>(t->data);
  if (self->started_) self->RefreshNow();
}

void TopologyRefresher::RefreshNow() {
  bool requested = requested_.exchange(false);
  uv_update_time(loop_);
  last_refresh_ms_ = uv_now(loop_);
  refreshes_.fetch_add(1);
  std::string errors;
  for (const SeedEndpoint& node : Candidates()) {
    absl::StatusOr<Topology> fetched = FetchFrom(node);
    if (!fetched.ok()) {
      StrAppend(&errors, errors.empty() ? "" : "; ", fetched.status().message());
      continue;
    }
    TopologySnapshot old = current();
    bool changed = old == nullptr || !SameLayout(*old, *fetched);
    if (changed) {
      fetched->version = next_version_++;
      auto snapshot = std::make_shared<const Topology>(*std::move(fetched));
      {
        std::lock_guard<std::mutex> lock(mu_);
        current_ = snapshot;
        last_error_.clear();
      }
      spdlog::info("topology v{}: {} masters, {} slots assigned (from {})", snapshot->version,
                   snapshot->masters.size(), snapshot->assigned_slots, snapshot->fetched_from);
      publish_(snapshot);
    }
    CheckMasters(*current());
    ScheduleNext(requested, changed, true);
    return;
  }
  failures_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = errors;
  }
  SLOTPILOT_LOG_RATE_LIMITED(warn, "topology refresh failed: {}", errors);
  if (TopologySnapshot t = current()) CheckMasters(*t);
  ScheduleNext(requested, false, false);
}

void TopologyRefresher::ScheduleNext(bool requested, bool changed, bool ok) {
  if (requested && !changed) follow_ups_left_ = kFollowUps;
  if (changed) follow_ups_left_ = 0;
  uint64_t delay = Jittered(options_.interval_ms);
  if (!ok || follow_ups_left_ > 0) {
    // Something is off (no answer, or a failover may be under way): look again soon, backing off.
    int step = ok ? kFollowUps - follow_ups_left_ : 0;
    if (follow_ups_left_ > 0) --follow_ups_left_;
    delay = std::min(delay, options_.min_interval_ms << std::min(step, 5));
  }
  uv_timer_start(&timer_, OnTimer, delay, 0);
}

uint64_t TopologyRefresher::Jittered(uint64_t ms) {
  uint64_t spread = ms / 5;  // ±20%
  if (spread == 0) return ms;
  return ms - spread + rng_() % (2 * spread + 1);
}

// Known masters first (they are the freshest), then the seeds, at most max_nodes_per_attempt.
std::vector<SeedEndpoint> TopologyRefresher::Candidates() {
  std::vector<SeedEndpoint> masters;
  if (TopologySnapshot t = current()) {
    for (const TopologyNode& m : t->masters) masters.push_back({m.host, m.port});
  }
  std::vector<SeedEndpoint> seeds = options_.seeds;
  std::shuffle(masters.begin(), masters.end(), rng_);
  std::shuffle(seeds.begin(), seeds.end(), rng_);
  std::vector<SeedEndpoint> out;
  for (auto* list : {&masters, &seeds}) {
    for (const SeedEndpoint& e : *list) {
      if (static_cast<int>(out.size()) >= options_.max_nodes_per_attempt) return out;
      bool dup = std::any_of(out.begin(), out.end(),
                             [&](const SeedEndpoint& o) { return o.host == e.host && o.port == e.port; });
      if (!dup) out.push_back(e);
    }
  }
  return out;
}

absl::StatusOr<Topology> TopologyRefresher::FetchFrom(const SeedEndpoint& node) {
  auto client = migration::RedisClient::Connect(node.host, node.port, options_.client);
  if (!client.ok()) return client.status();
  auto slots = (*client)->Command({"CLUSTER", "SLOTS"});
  if (!slots.ok()) return slots.status();
  if (slots->is_error()) {
    return absl::FailedPreconditionError(
        StrCat((*client)->address(), " CLUSTER SLOTS: ", slots->str));
  }
  auto entries = protocol::ParseClusterSlots(*slots);
  if (!entries.ok()) return entries.status();
  absl::StatusOr<Topology> topology = BuildTopology(*entries, node.host);
  if (!topology.ok()) return topology.status();
  topology->fetched_at = absl::Now();
  topology->fetched_from = (*client)->address();
  auto info = (*client)->Command({"INFO", "server"});
  if (info.ok() && !info->is_error()) topology->redis_version = RedisVersionFromInfo(info->str);
  return topology;
}

}  // namespace slotpilot::proxy
