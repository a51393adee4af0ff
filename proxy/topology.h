// The cluster topology as the control plane publishes it: an immutable, versioned snapshot that
// workers copy into their own RoutingTable.
#ifndef SLOTPILOT_PROXY_TOPOLOGY_H_
#define SLOTPILOT_PROXY_TOPOLOGY_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protocol/slot.h"
#include "protocol/topology.h"

namespace slotpilot::proxy {

struct TopologyNode {
  std::string host;
  uint16_t port = 0;
  std::string id;
  std::vector<protocol::NodeEndpoint> replicas;
  std::string Address() const;
};

struct Topology {
  uint64_t version = 0;
  absl::Time fetched_at;
  std::string fetched_from;  // address of the node that answered
  std::vector<TopologyNode> masters;
  // Index into `masters` of each slot's owner; -1 when unassigned.
  std::array<int16_t, protocol::kSlotCount> slot_master{};
  int assigned_slots = 0;
  std::string redis_version;  // from INFO server of the node that answered
};

using TopologySnapshot = std::shared_ptr<const Topology>;

// Whether the control plane could reach a master on its last check.
struct MasterHealth {
  std::string address;
  std::string id;
  bool reachable = false;
  std::string error;
};

// Builds a topology from a parsed CLUSTER SLOTS reply. Empty endpoints ("" or "?") are replaced
// by the host the reply came from, as the cluster spec asks clients to do.
absl::StatusOr<Topology> BuildTopology(const std::vector<protocol::SlotsEntry>& entries,
                                       const std::string& answered_by_host);

// "host:port", with brackets around IPv6 addresses.
std::string FormatAddress(const std::string& host, uint16_t port);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_TOPOLOGY_H_
