#include "proxy/routing_table.h"

namespace slotpilot::proxy {

void RoutingTable::Install(const Topology& topology) {
  for (Node& n : nodes_) n.in_topology = false;
  std::vector<uint16_t> by_master(topology.masters.size(), kNoNode);
  masters_.clear();
  for (size_t i = 0; i < topology.masters.size(); ++i) {
    const TopologyNode& m = topology.masters[i];
    uint16_t index = FindOrAddNode(m.host, m.port);
    if (index == kNoNode) continue;  // table full: its slots stay unrouted (CLUSTERDOWN)
    nodes_[index].id = m.id;
    nodes_[index].in_topology = true;
    by_master[i] = index;
    masters_.push_back(index);
  }
  for (int s = 0; s < protocol::kSlotCount; ++s) {
    int16_t m = topology.slot_master[s];
    slot_node_[s] = m < 0 ? kNoNode : by_master[m];
  }
  version_ = topology.version;
}

bool RoutingTable::SetSlot(uint16_t slot, uint16_t node) {
  if (slot_node_[slot] == node) return false;
  slot_node_[slot] = node;
  return true;
}

uint16_t RoutingTable::FindOrAddNode(std::string_view host, uint16_t port) {
  std::string address = FormatAddress(std::string(host), port);
  auto it = index_by_address_.find(address);
  if (it != index_by_address_.end()) return it->second;
  if (nodes_.size() >= kMaxNodes) return kNoNode;
  uint16_t index = static_cast<uint16_t>(nodes_.size());
  nodes_.push_back(Node{std::string(host), port, address, "", false});
  index_by_address_.emplace(std::move(address), index);
  return index;
}

}  // namespace slotpilot::proxy
