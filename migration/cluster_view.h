// ClusterView: what every master says about the cluster, polled over blocking hiredis clients on
// the watcher's thread (never a worker loop).
//
// Open slots exist only on each master's own `myself` line (MIGRATION.md A.1), so a snapshot holds
// each master's full view separately; nothing is merged or guessed here. Key counts are asked for
// the slots of interest only (open, disputed, unassigned, or reported by the proxies), on every
// master, because keys of a slot can sit on any node.
#ifndef SLOTPILOT_MIGRATION_CLUSTER_VIEW_H_
#define SLOTPILOT_MIGRATION_CLUSTER_VIEW_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "migration/redis_client.h"
#include "protocol/slot.h"
#include "protocol/topology.h"

namespace slotpilot::migration {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const;
};

// CLUSTER INFO of one node.
struct ClusterInfo {
  std::string state;  // "ok" / "fail"
  int slots_assigned = 0;
  int slots_ok = 0;
  int slots_pfail = 0;
  int slots_fail = 0;
  int known_nodes = 0;
  int size = 0;
  uint64_t current_epoch = 0;
  uint64_t my_epoch = 0;
};

// INFO memory of one node.
struct MemoryInfo {
  uint64_t used_memory = 0;
  uint64_t maxmemory = 0;  // 0 = no limit
  std::string maxmemory_policy;
};

// One master, as it sees itself and the cluster.
struct MasterView {
  Endpoint endpoint;
  std::string id;  // its own node id (myself line)
  bool reachable = false;
  std::string error;                         // why not reachable
  bool loading = false;                      // LOADING: dataset being loaded
  std::vector<protocol::ClusterNode> nodes;  // its CLUSTER NODES
  ClusterInfo info;
  MemoryInfo memory;
  uint64_t config_epoch = 0;  // its own, from its myself line
  // MIGRATE commands this node has served (INFO commandstats), -1 = unknown. A migration makes
  // it grow on the node keys leave; client writes and expiries never do, so this, not key
  // counts alone, tells a live reshard from traffic on a stuck slot.
  int64_t migrate_calls = -1;
  // How long this master took to answer the poll's pipeline (connect included). A master that
  // answers slowly may be blocked inside a MIGRATE (MIGRATION.md A.5): the detector backs off.
  absl::Duration poll_duration = absl::ZeroDuration();
  // Owner of every slot in this master's view: index into `nodes`, -1 = unassigned here.
  std::array<int16_t, protocol::kSlotCount> owner_index = UnassignedOwners();
  std::vector<protocol::OpenSlot> migrating;  // [s->-dst] on its myself line
  std::vector<protocol::OpenSlot> importing;  // [s-<-src] on its myself line
  std::map<uint16_t, int64_t> keys;           // COUNTKEYSINSLOT for the slots asked
  // Flags other masters put on this node in their views (fail, fail?, handshake), merged.
  uint32_t flags_seen_by_others = 0;

  static constexpr std::array<int16_t, protocol::kSlotCount> UnassignedOwners() {
    std::array<int16_t, protocol::kSlotCount> a{};
    for (int16_t& x : a) x = -1;
    return a;
  }
  // Node id owning `slot` in this view, "" when unassigned here.
  std::string_view OwnerId(uint16_t slot) const;
  int64_t KeysIn(uint16_t slot) const;                            // -1 when not counted
  std::optional<std::string> MigratingTo(uint16_t slot) const;    // destination id
  std::optional<std::string> ImportingFrom(uint16_t slot) const;  // source id
};

// A replica and the state of its replication link (INFO replication master_link_status).
struct ReplicaView {
  Endpoint endpoint;
  std::string id;
  std::string master_id;
  bool reachable = false;
  std::string link_status;  // "up" / "down" / "" when unknown
  uint32_t flags = 0;       // as the entry master sees it
};

struct ClusterSnapshot {
  absl::Time taken_at;
  std::vector<MasterView> masters;  // every node some view lists as a master
  std::vector<ReplicaView> replicas;
  std::set<uint16_t> counted_slots;  // slots whose key counts were asked on every master
  // Slots of interest left uncounted this poll because of ClusterViewOptions::max_counted_slots.
  std::set<uint16_t> uncounted_slots;
  std::string entry;  // "host:port" of the node whose CLUSTER NODES listed the masters

  // Index in `masters` of the node with this id, -1 when unknown.
  int IndexOfId(std::string_view id) const;
  const MasterView* MasterById(std::string_view id) const;  // nullptr when unknown
  // Every master reachable, not loading, and flagged neither fail nor fail? nor handshake by
  // anyone.
  bool AllMastersHealthy(std::string* why = nullptr) const;
  // Slots some master shows MIGRATING or IMPORTING.
  std::set<uint16_t> OpenSlots() const;
  // Slots whose owner differs between reachable masters' views, or that some view leaves
  // unassigned.
  std::set<uint16_t> DisputedOrUnassignedSlots() const;
};

struct ClusterViewOptions {
  std::vector<Endpoint> seeds;
  RedisClientOptions client;  // credentials and timeouts for every poll connection
  bool poll_replicas = true;  // INFO replication on every replica (link status)
  // Cap on the slots whose keys are counted per poll (COUNTKEYSINSLOT on every master): open slots
  // first, then `extra_slots`, then disputed/unassigned ones. A fresh or broken cluster can have
  // thousands of unassigned slots; counting all of them would make one poll cost 16384 x masters
  // round trips. The rest are listed in ClusterSnapshot::uncounted_slots.
  size_t max_counted_slots = 256;
  // Upper bound on the nodes polled per pass (a runaway view must not make a poll unbounded).
  size_t max_nodes = 256;
};

// Polls the cluster. Keeps one connection per node between polls. Watcher thread only.
class ClusterView {
 public:
  explicit ClusterView(ClusterViewOptions options);
  ~ClusterView();

  // One consistent pass: discover the masters (from a reachable master's CLUSTER NODES, falling
  // back to the seeds), ask each for CLUSTER NODES, CLUSTER INFO and INFO memory, then
  // COUNTKEYSINSLOT on every master for `extra_slots` plus every open, disputed or unassigned
  // slot. Fails only when no node at all answers.
  absl::StatusOr<ClusterSnapshot> Poll(const std::set<uint16_t>& extra_slots);

  // A client to the node at `endpoint` (connecting if needed), for the finisher's commands.
  // Owned by the view; valid until the next Poll/Client call that finds it broken (a client whose
  // ok() is false is replaced). Same thread as Poll.
  absl::StatusOr<RedisClient*> Client(const Endpoint& endpoint);

  const ClusterViewOptions& options() const { return options_; }

 private:
  struct NodeReplies;
  absl::StatusOr<std::vector<protocol::ClusterNode>> Discover(std::string* entry);
  MasterView PollMaster(const Endpoint& endpoint);
  void CountKeys(ClusterSnapshot* snapshot, const std::set<uint16_t>& extra_slots);
  void PollReplica(ReplicaView* replica);

  ClusterViewOptions options_;
  std::map<std::string, std::unique_ptr<RedisClient>> clients_;  // by "host:port"
  std::vector<Endpoint> known_masters_;  // from the last successful poll, tried before the seeds
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_CLUSTER_VIEW_H_
