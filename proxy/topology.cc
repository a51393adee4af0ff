#include "proxy/topology.h"

#include "absl/container/flat_hash_map.h"
#include "protocol/strings.h"

namespace slotpilot::proxy {

std::string FormatAddress(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return StrCat("[", host, "]:", port);
  return StrCat(host, ":", port);
}

std::string TopologyNode::Address() const { return FormatAddress(host, port); }

absl::StatusOr<Topology> BuildTopology(const std::vector<protocol::SlotsEntry>& entries,
                                       const std::string& answered_by_host) {
  Topology topology;
  topology.slot_master.fill(-1);
  absl::flat_hash_map<std::string, int16_t> index_by_address;
  for (const protocol::SlotsEntry& entry : entries) {
    if (entry.range.first > entry.range.last || entry.range.last >= protocol::kSlotCount) {
      return absl::InvalidArgumentError(
          StrCat("bad slot range ", entry.range.first, "-", entry.range.last));
    }
    std::string host = entry.master.host;
    if (host.empty() || host == "?") host = answered_by_host;
    std::string address = FormatAddress(host, entry.master.port);
    auto [it, inserted] =
        index_by_address.try_emplace(address, static_cast<int16_t>(topology.masters.size()));
    if (inserted) {
      topology.masters.push_back(
          TopologyNode{host, entry.master.port, entry.master.id, entry.replicas});
    }
    for (int s = entry.range.first; s <= entry.range.last; ++s) {
      if (topology.slot_master[s] != -1 && topology.slot_master[s] != it->second) {
        return absl::InvalidArgumentError(StrCat("slot ", s, " listed for two masters"));
      }
      if (topology.slot_master[s] == -1) ++topology.assigned_slots;
      topology.slot_master[s] = it->second;
    }
  }
  if (topology.masters.empty()) return absl::UnavailableError("CLUSTER SLOTS lists no masters");
  return topology;
}

}  // namespace slotpilot::proxy
