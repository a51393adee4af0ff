// A worker's own copy of the slot map: slot -> worker-local node index. Installed from each new
// Topology snapshot and patched locally by MOVED replies until the next snapshot arrives.
//
// Node indices are stable for the worker's lifetime (a node that leaves the topology keeps its
// index, marked absent), so upstream connections can be attached by index. Loop thread only.
#ifndef SLOTPILOT_PROXY_ROUTING_TABLE_H_
#define SLOTPILOT_PROXY_ROUTING_TABLE_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "protocol/slot.h"
#include "proxy/topology.h"

namespace slotpilot::proxy {

class RoutingTable {
 public:
  static constexpr uint16_t kNoNode = 0xFFFF;

  struct Node {
    std::string host;
    uint16_t port = 0;
    std::string address;  // FormatAddress(host, port)
    std::string id;       // node id when known
    bool in_topology = false;  // a master in the latest snapshot
  };

  RoutingTable() { slot_node_.fill(kNoNode); }

  // Replaces the slot map with the snapshot's. Returns the indices of nodes that are masters in it.
  void Install(const Topology& topology);

  uint16_t NodeForSlot(uint16_t slot) const { return slot_node_[slot]; }
  // Points a slot at a node (after MOVED). Returns true if the owner changed.
  bool SetSlot(uint16_t slot, uint16_t node);
  // Index of the node at host:port, adding it if it is new (a MOVED may name a node the last
  // snapshot did not have). kNoNode once the table holds kMaxNodes addresses: indexes are 16
  // bits, and the table never shrinks (an address learnt from a redirect stays), so a node that
  // changes address on every restart must not wrap an index onto another node.
  uint16_t FindOrAddNode(std::string_view host, uint16_t port);
  static constexpr size_t kMaxNodes = kNoNode;  // indexes 0 .. kNoNode - 1

  const Node& node(uint16_t index) const { return nodes_[index]; }
  size_t node_count() const { return nodes_.size(); }
  uint64_t version() const { return version_; }
  // Masters of the installed snapshot (for keyless commands and fan-out).
  const std::vector<uint16_t>& masters() const { return masters_; }

 private:
  std::array<uint16_t, protocol::kSlotCount> slot_node_;
  std::vector<Node> nodes_;
  absl::flat_hash_map<std::string, uint16_t> index_by_address_;
  std::vector<uint16_t> masters_;
  uint64_t version_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_ROUTING_TABLE_H_
