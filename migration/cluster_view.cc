#include "migration/cluster_view.h"

#include <algorithm>
#include <utility>

#include "protocol/strings.h"

namespace slotpilot::migration {
namespace {

using protocol::ClusterNode;
using protocol::RespValue;

constexpr uint32_t kUnpolledFlags = protocol::kFlagHandshake | protocol::kFlagNoAddr;
constexpr uint32_t kFlagsOthersReport =
    protocol::kFlagFail | protocol::kFlagPfail | protocol::kFlagHandshake | protocol::kFlagNoAddr;

template <typename T>
T InfoNumber(std::string_view text, std::string_view key) {
  T value{};
  if (!ParseInt(InfoField(text, key), &value)) return T{};
  return value;
}

ClusterInfo ParseClusterInfo(std::string_view text) {
  ClusterInfo info;
  info.state = std::string(InfoField(text, "cluster_state"));
  info.slots_assigned = InfoNumber<int>(text, "cluster_slots_assigned");
  info.slots_ok = InfoNumber<int>(text, "cluster_slots_ok");
  info.slots_pfail = InfoNumber<int>(text, "cluster_slots_pfail");
  info.slots_fail = InfoNumber<int>(text, "cluster_slots_fail");
  info.known_nodes = InfoNumber<int>(text, "cluster_known_nodes");
  info.size = InfoNumber<int>(text, "cluster_size");
  info.current_epoch = InfoNumber<uint64_t>(text, "cluster_current_epoch");
  info.my_epoch = InfoNumber<uint64_t>(text, "cluster_my_epoch");
  return info;
}

MemoryInfo ParseMemoryInfo(std::string_view text) {
  MemoryInfo m;
  m.used_memory = InfoNumber<uint64_t>(text, "used_memory");
  m.maxmemory = InfoNumber<uint64_t>(text, "maxmemory");
  m.maxmemory_policy = std::string(InfoField(text, "maxmemory_policy"));
  return m;
}

bool IsLoadingError(const RespValue& v) {
  return v.is_error() && v.str.compare(0, 7, "LOADING") == 0;
}

const ClusterNode* Myself(const std::vector<ClusterNode>& nodes) {
  for (const ClusterNode& n : nodes) {
    if (n.has(protocol::kFlagMyself)) return &n;
  }
  return nullptr;
}

bool IsPollableMaster(const ClusterNode& n) {
  return n.has(protocol::kFlagMaster) && (n.flags & kUnpolledFlags) == 0 && !n.host.empty() &&
         n.port != 0;
}

// calls= of `cmdstat_migrate` in INFO commandstats; 0 when the node never served one.
int64_t MigrateCalls(std::string_view text) {
  std::string_view stat = InfoField(text, "cmdstat_migrate");
  if (stat.substr(0, 6) != "calls=") return 0;
  stat.remove_prefix(6);
  stat = stat.substr(0, stat.find(','));
  int64_t calls = 0;
  return ParseInt(stat, &calls) ? calls : -1;
}

}  // namespace

std::string Endpoint::ToString() const { return StrCat(host, ":", port); }

// --- MasterView ---------------------------------------------------------------------------------

std::string_view MasterView::OwnerId(uint16_t slot) const {
  const int16_t idx = owner_index[slot];
  if (idx < 0 || static_cast<size_t>(idx) >= nodes.size()) return {};
  return nodes[idx].id;
}

int64_t MasterView::KeysIn(uint16_t slot) const {
  auto it = keys.find(slot);
  return it == keys.end() ? -1 : it->second;
}

std::optional<std::string> MasterView::MigratingTo(uint16_t slot) const {
  for (const protocol::OpenSlot& o : migrating) {
    if (o.slot == slot) return o.peer_id;
  }
  return std::nullopt;
}

std::optional<std::string> MasterView::ImportingFrom(uint16_t slot) const {
  for (const protocol::OpenSlot& o : importing) {
    if (o.slot == slot) return o.peer_id;
  }
  return std::nullopt;
}

// --- ClusterSnapshot ----------------------------------------------------------------------------

int ClusterSnapshot::IndexOfId(std::string_view id) const {
  if (id.empty()) return -1;
  for (size_t i = 0; i < masters.size(); ++i) {
    if (masters[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

const MasterView* ClusterSnapshot::MasterById(std::string_view id) const {
  const int i = IndexOfId(id);
  return i < 0 ? nullptr : &masters[i];
}

bool ClusterSnapshot::AllMastersHealthy(std::string* why) const {
  std::string reason;
  if (masters.empty()) reason = "no master known";
  for (const MasterView& m : masters) {
    if (!reason.empty()) break;
    const std::string name = StrCat(m.endpoint.ToString(), " (", m.id, ")");
    if (!m.reachable) {
      reason = StrCat("master ", name, " unreachable: ", m.error);
    } else if (m.loading) {
      reason = StrCat("master ", name, " is loading its dataset");
    } else if ((m.flags_seen_by_others & protocol::kFlagFail) != 0) {
      reason = StrCat("master ", name, " is flagged fail by another master");
    } else if ((m.flags_seen_by_others & protocol::kFlagPfail) != 0) {
      reason = StrCat("master ", name, " is flagged fail? by another master");
    } else if ((m.flags_seen_by_others & protocol::kFlagHandshake) != 0) {
      reason = StrCat("master ", name, " is still in handshake for another master");
    }
  }
  if (why != nullptr) *why = reason;
  return reason.empty();
}

std::set<uint16_t> ClusterSnapshot::OpenSlots() const {
  std::set<uint16_t> open;
  for (const MasterView& m : masters) {
    if (!m.reachable) continue;
    for (const protocol::OpenSlot& o : m.migrating) open.insert(o.slot);
    for (const protocol::OpenSlot& o : m.importing) open.insert(o.slot);
  }
  return open;
}

std::set<uint16_t> ClusterSnapshot::DisputedOrUnassignedSlots() const {
  std::set<uint16_t> out;
  std::vector<const MasterView*> views;
  for (const MasterView& m : masters) {
    if (m.reachable && !m.nodes.empty()) views.push_back(&m);
  }
  if (views.empty()) return out;
  for (int s = 0; s < protocol::kSlotCount; ++s) {
    const uint16_t slot = static_cast<uint16_t>(s);
    const std::string_view first = views[0]->OwnerId(slot);
    bool suspect = first.empty();
    for (size_t v = 1; v < views.size() && !suspect; ++v) {
      suspect = views[v]->OwnerId(slot) != first;
    }
    if (suspect) out.insert(slot);
  }
  return out;
}

// --- ClusterView --------------------------------------------------------------------------------

ClusterView::ClusterView(ClusterViewOptions options) : options_(std::move(options)) {}
ClusterView::~ClusterView() = default;

absl::StatusOr<RedisClient*> ClusterView::Client(const Endpoint& endpoint) {
  const std::string key = endpoint.ToString();
  auto it = clients_.find(key);
  if (it != clients_.end() && it->second->ok()) return it->second.get();
  if (it != clients_.end()) clients_.erase(it);
  auto client = RedisClient::Connect(endpoint.host, endpoint.port, options_.client);
  if (!client.ok()) return client.status();
  RedisClient* raw = client->get();
  clients_[key] = *std::move(client);
  return raw;
}

// The first node that answers CLUSTER NODES lists the masters: the masters of the last poll are
// tried first (they are current), then the seeds.
absl::StatusOr<std::vector<ClusterNode>> ClusterView::Discover(std::string* entry) {
  std::vector<Endpoint> candidates = known_masters_;
  for (const Endpoint& seed : options_.seeds) {
    const bool dup = std::any_of(candidates.begin(), candidates.end(), [&](const Endpoint& e) {
      return e.host == seed.host && e.port == seed.port;
    });
    if (!dup) candidates.push_back(seed);
  }
  std::string errors;
  for (const Endpoint& ep : candidates) {
    auto client = Client(ep);
    absl::StatusOr<RespValue> reply = client.ok() ? (*client)->Command({"CLUSTER", "NODES"})
                                                  : absl::StatusOr<RespValue>(client.status());
    if (reply.ok() && reply->type == protocol::ReplyType::kBulk) {
      auto nodes = protocol::ParseClusterNodes(reply->str);
      if (nodes.ok()) {
        *entry = ep.ToString();
        return nodes;
      }
      StrAppend(&errors, errors.empty() ? "" : "; ", ep.ToString(), ": ",
                AsStd(nodes.status().message()));
      continue;
    }
    StrAppend(&errors, errors.empty() ? "" : "; ", ep.ToString(), ": ",
              reply.ok() ? reply->str : std::string(AsStd(reply.status().message())));
  }
  if (candidates.empty()) errors = "no seed configured";
  return absl::UnavailableError(AsAbsl(StrCat("no cluster node answered CLUSTER NODES: ", errors)));
}

// One round trip: CLUSTER NODES, CLUSTER INFO and INFO (memory, persistence, replication,
// commandstats).
// Bounded by connect_timeout + command_timeout: the first reply that times out breaks the client
// and ends the pipeline.
MasterView ClusterView::PollMaster(const Endpoint& endpoint) {
  MasterView view;
  view.endpoint = endpoint;
  const absl::Time start = absl::Now();
  auto client = Client(endpoint);
  absl::StatusOr<std::vector<RespValue>> replies =
      client.ok() ? (*client)->Pipeline({{"CLUSTER", "NODES"},
                                         {"CLUSTER", "INFO"},
                                         {"INFO", "memory", "persistence", "replication",
                                          "commandstats"}})
                  : absl::StatusOr<std::vector<RespValue>>(client.status());
  view.poll_duration = absl::Now() - start;
  if (!replies.ok()) {
    view.error = std::string(AsStd(replies.status().message()));
    return view;
  }
  const RespValue& nodes_reply = (*replies)[0];
  const RespValue& info_reply = (*replies)[1];
  const RespValue& infos_reply = (*replies)[2];
  view.reachable = true;
  if (!infos_reply.is_error()) {
    view.memory = ParseMemoryInfo(infos_reply.str);
    view.loading = InfoField(infos_reply.str, "loading") == "1";
    view.migrate_calls = MigrateCalls(infos_reply.str);
  }
  if (IsLoadingError(nodes_reply) || IsLoadingError(info_reply)) view.loading = true;
  if (!info_reply.is_error()) view.info = ParseClusterInfo(info_reply.str);
  // Without its own view a master is useless to the classifier: count it as unreachable (with
  // `loading` kept, so the reason is visible).
  if (nodes_reply.is_error()) {
    view.reachable = false;
    view.error = StrCat("CLUSTER NODES: ", nodes_reply.str);
    return view;
  }
  auto nodes = protocol::ParseClusterNodes(nodes_reply.str);
  if (!nodes.ok()) {
    view.reachable = false;
    view.error = StrCat("CLUSTER NODES: ", AsStd(nodes.status().message()));
    return view;
  }
  view.nodes = *std::move(nodes);
  for (size_t i = 0; i < view.nodes.size(); ++i) {
    const ClusterNode& n = view.nodes[i];
    for (const protocol::SlotRange& r : n.slots) {
      for (int s = r.first; s <= r.last && s < protocol::kSlotCount; ++s) {
        view.owner_index[s] = static_cast<int16_t>(i);
      }
    }
    if (n.has(protocol::kFlagMyself)) {
      view.id = n.id;
      view.config_epoch = n.config_epoch;
      view.migrating = n.migrating;
      view.importing = n.importing;
    }
  }
  return view;
}

void ClusterView::PollReplica(ReplicaView* replica) {
  auto client = Client(replica->endpoint);
  absl::StatusOr<RespValue> reply = client.ok() ? (*client)->Command({"INFO", "replication"})
                                                : absl::StatusOr<RespValue>(client.status());
  if (!reply.ok() || reply->is_error()) return;
  replica->reachable = true;
  replica->link_status = std::string(InfoField(reply->str, "master_link_status"));
}

// Counts keys of the slots of interest on every reachable master, in one pipeline per master.
// Open slots come first, then the caller's extra slots (e.g. loop reports), then disputed or
// unassigned ones, up to options_.max_counted_slots; the rest are recorded as uncounted.
void ClusterView::CountKeys(ClusterSnapshot* snapshot, const std::set<uint16_t>& extra_slots) {
  std::vector<uint16_t> wanted;
  std::set<uint16_t> seen;
  auto add = [&](const std::set<uint16_t>& slots) {
    for (uint16_t s : slots) {
      if (s < protocol::kSlotCount && seen.insert(s).second) wanted.push_back(s);
    }
  };
  add(snapshot->OpenSlots());
  add(extra_slots);
  add(snapshot->DisputedOrUnassignedSlots());
  if (wanted.size() > options_.max_counted_slots) {
    snapshot->uncounted_slots.insert(wanted.begin() + options_.max_counted_slots, wanted.end());
    wanted.resize(options_.max_counted_slots);
  }
  if (wanted.empty()) return;
  std::vector<std::vector<std::string>> commands;
  for (uint16_t s : wanted) commands.push_back({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(s)});
  for (MasterView& m : snapshot->masters) {
    if (!m.reachable || m.loading) continue;
    auto client = Client(m.endpoint);
    if (!client.ok()) continue;
    auto replies = (*client)->Pipeline(commands);
    if (!replies.ok()) {
      m.reachable = false;  // answered the first round trip, not this one
      m.error = StrCat("COUNTKEYSINSLOT: ", AsStd(replies.status().message()));
      continue;
    }
    for (size_t i = 0; i < wanted.size(); ++i) {
      const RespValue& r = (*replies)[i];
      if (r.type == protocol::ReplyType::kInteger) m.keys[wanted[i]] = r.integer;
    }
  }
  snapshot->counted_slots.insert(wanted.begin(), wanted.end());
}

absl::StatusOr<ClusterSnapshot> ClusterView::Poll(const std::set<uint16_t>& extra_slots) {
  ClusterSnapshot snapshot;
  snapshot.taken_at = absl::Now();
  auto listed = Discover(&snapshot.entry);
  if (!listed.ok()) return listed.status();

  // Breadth-first over the masters the views name: a master only some views know is polled too.
  std::vector<std::pair<Endpoint, std::string>> queue;  // endpoint, id as listed
  std::set<std::string> queued;
  auto enqueue = [&](const std::vector<ClusterNode>& nodes) {
    for (const ClusterNode& n : nodes) {
      if (IsPollableMaster(n) && queued.insert(n.id).second) {
        queue.push_back({Endpoint{n.host, n.port}, n.id});
      }
    }
  };
  enqueue(*listed);
  std::map<std::string, ReplicaView> replicas;  // by id
  for (size_t i = 0; i < queue.size() && i < options_.max_nodes; ++i) {
    MasterView view = PollMaster(queue[i].first);
    const ClusterNode* myself = Myself(view.nodes);
    if (myself != nullptr && myself->has(protocol::kFlagReplica)) {
      // Listed as a master by a stale view, but it is a replica now (e.g. it lost its last slot).
      ReplicaView r{view.endpoint, myself->id, myself->master_id, false, "", myself->flags};
      replicas[r.id] = r;
      continue;
    }
    if (view.id.empty()) view.id = queue[i].second;
    enqueue(view.nodes);
    snapshot.masters.push_back(std::move(view));
  }

  // Flags that the other masters put on each master, and the replicas every view lists.
  for (const MasterView& v : snapshot.masters) {
    for (const ClusterNode& n : v.nodes) {
      if (n.has(protocol::kFlagMyself)) continue;
      const int m = snapshot.IndexOfId(n.id);
      if (m >= 0) snapshot.masters[m].flags_seen_by_others |= n.flags & kFlagsOthersReport;
      if (n.has(protocol::kFlagReplica) && (n.flags & kUnpolledFlags) == 0 &&
          !replicas.count(n.id)) {
        replicas[n.id] =
            ReplicaView{Endpoint{n.host, n.port}, n.id, n.master_id, false, "", n.flags};
      }
    }
  }
  for (auto& [id, r] : replicas) {
    if (options_.poll_replicas && !r.reachable && !r.endpoint.host.empty()) PollReplica(&r);
    snapshot.replicas.push_back(std::move(r));
  }

  CountKeys(&snapshot, extra_slots);
  known_masters_.clear();
  for (const MasterView& m : snapshot.masters) {
    if (m.reachable) known_masters_.push_back(m.endpoint);
  }
  return snapshot;
}

}  // namespace slotpilot::migration
