// Parsers for the cluster topology replies: CLUSTER SLOTS, CLUSTER SHARDS and CLUSTER NODES.
// Pure functions; values are owned copies (used off the hot path).
#ifndef SLOTPILOT_PROTOCOL_TOPOLOGY_H_
#define SLOTPILOT_PROTOCOL_TOPOLOGY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/resp.h"

namespace slotpilot::protocol {

struct SlotRange {
  uint16_t first = 0;
  uint16_t last = 0;  // inclusive
  friend bool operator==(const SlotRange&, const SlotRange&) = default;
};

struct NodeEndpoint {
  // Preferred endpoint as the cluster reports it (IP or hostname). In CLUSTER SLOTS, "" means
  // "the node you asked" and "?" means unknown (Redis 7); both are passed through as sent.
  std::string host;
  uint16_t port = 0;
  std::string id;    // node id (40 hex chars) when reported, else empty
  friend bool operator==(const NodeEndpoint&, const NodeEndpoint&) = default;
};

// One entry of CLUSTER SLOTS: a slot range, its master and its replicas.
struct SlotsEntry {
  SlotRange range;
  NodeEndpoint master;
  std::vector<NodeEndpoint> replicas;
};
absl::StatusOr<std::vector<SlotsEntry>> ParseClusterSlots(const RespValue& reply);

// One shard of CLUSTER SHARDS (Redis 7).
struct ShardNode {
  NodeEndpoint endpoint;
  std::string role;    // "master" / "replica"
  std::string health;  // "online" / "failed" / "loading"
  int64_t replication_offset = 0;
};
struct Shard {
  std::vector<SlotRange> slots;
  std::vector<ShardNode> nodes;
};
absl::StatusOr<std::vector<Shard>> ParseClusterShards(const RespValue& reply);

// CLUSTER NODES, one line per node:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch>
// <link-state> <slot> <slot> ... <slot>
enum NodeFlag : uint32_t {
  kFlagMyself = 1u << 0,
  kFlagMaster = 1u << 1,
  kFlagReplica = 1u << 2,   // "slave"
  kFlagPfail = 1u << 3,     // "fail?"
  kFlagFail = 1u << 4,
  kFlagHandshake = 1u << 5,
  kFlagNoAddr = 1u << 6,
  kFlagNoFailover = 1u << 7,
  kFlagNoFlags = 1u << 8,   // "noflags"
};

// An open slot marker on the node's own (myself) line: [slot->-dst-id] or [slot-<-src-id].
struct OpenSlot {
  uint16_t slot = 0;
  std::string peer_id;  // migrating: destination id; importing: source id
  friend bool operator==(const OpenSlot&, const OpenSlot&) = default;
};

struct ClusterNode {
  std::string id;
  std::string host;      // may be empty for a node without address (noaddr)
  uint16_t port = 0;
  uint16_t bus_port = 0;
  std::string hostname;  // optional ",hostname" part
  uint32_t flags = 0;    // NodeFlag bits
  std::string master_id; // empty when "-"
  int64_t ping_sent = 0;
  int64_t pong_received = 0;
  uint64_t config_epoch = 0;
  bool connected = false;  // link-state
  std::vector<SlotRange> slots;
  std::vector<OpenSlot> migrating;  // only ever on the myself line
  std::vector<OpenSlot> importing;  // only ever on the myself line

  bool has(NodeFlag f) const { return (flags & f) != 0; }
};
absl::StatusOr<std::vector<ClusterNode>> ParseClusterNodes(std::string_view text);

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_TOPOLOGY_H_
