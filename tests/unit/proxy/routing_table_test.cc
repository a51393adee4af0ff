#include "proxy/routing_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "protocol/slot.h"
#include "protocol/topology.h"
#include "proxy/topology.h"

namespace slotpilot::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using protocol::NodeEndpoint;
using protocol::SlotsEntry;

constexpr uint16_t kNoNode = RoutingTable::kNoNode;

SlotsEntry Entry(uint16_t first, uint16_t last, std::string host, uint16_t port, std::string id = "") {
  return SlotsEntry{{first, last}, NodeEndpoint{std::move(host), port, std::move(id)}, {}};
}

Topology Build(const std::vector<SlotsEntry>& entries, uint64_t version) {
  absl::StatusOr<Topology> t = BuildTopology(entries, "10.0.0.1");
  EXPECT_TRUE(t.ok()) << t.status();
  t->version = version;
  return *std::move(t);
}

// Three masters A, B, C splitting the slots as redis-cli --cluster create does.
Topology ThreeMasters(uint64_t version = 1) {
  return Build({Entry(0, 5460, "10.0.0.1", 7000, "id-a"), Entry(5461, 10922, "10.0.0.2", 7000, "id-b"),
                Entry(10923, 16383, "10.0.0.3", 7000, "id-c")},
               version);
}

TEST(RoutingTableTest, EmptyBeforeTheFirstInstall) {
  RoutingTable table;
  EXPECT_EQ(table.node_count(), 0u);
  EXPECT_EQ(table.version(), 0u);
  EXPECT_THAT(table.masters(), IsEmpty());
  EXPECT_EQ(table.NodeForSlot(0), kNoNode);
  EXPECT_EQ(table.NodeForSlot(16383), kNoNode);
}

TEST(RoutingTableTest, InstallMapsEverySlotToItsMaster) {
  RoutingTable table;
  table.Install(ThreeMasters(7));
  EXPECT_EQ(table.version(), 7u);
  ASSERT_EQ(table.node_count(), 3u);
  EXPECT_THAT(table.masters(), ElementsAre(0, 1, 2));
  const RoutingTable::Node& a = table.node(0);
  EXPECT_EQ(a.host, "10.0.0.1");
  EXPECT_EQ(a.port, 7000);
  EXPECT_EQ(a.address, "10.0.0.1:7000");
  EXPECT_EQ(a.id, "id-a");
  EXPECT_TRUE(a.in_topology);
  EXPECT_EQ(table.node(2).id, "id-c");

  for (int s = 0; s < protocol::kSlotCount; ++s) {
    uint16_t expected = s <= 5460 ? 0 : s <= 10922 ? 1 : 2;
    ASSERT_EQ(table.NodeForSlot(static_cast<uint16_t>(s)), expected) << "slot " << s;
  }
  // A key routes to the owner of its hash slot.
  EXPECT_EQ(table.NodeForSlot(protocol::KeyHashSlot("foo")), 2);  // slot 12182
  EXPECT_EQ(table.NodeForSlot(protocol::KeyHashSlot("bar")), 0);  // slot 5061
}

TEST(RoutingTableTest, UnassignedSlotsHaveNoNode) {
  RoutingTable table;
  table.Install(Build({Entry(0, 99, "10.0.0.1", 7000), Entry(200, 16383, "10.0.0.2", 7000)}, 1));
  EXPECT_EQ(table.NodeForSlot(99), 0);
  EXPECT_EQ(table.NodeForSlot(100), kNoNode);
  EXPECT_EQ(table.NodeForSlot(199), kNoNode);
  EXPECT_EQ(table.NodeForSlot(200), 1);

  // A later snapshot that covers the hole fills it; one that drops a range empties it.
  table.Install(Build({Entry(0, 16383, "10.0.0.2", 7000)}, 2));
  EXPECT_EQ(table.NodeForSlot(150), 1);
  table.Install(Build({Entry(0, 8000, "10.0.0.2", 7000)}, 3));
  EXPECT_EQ(table.NodeForSlot(8001), kNoNode);
}

TEST(RoutingTableTest, NodeIndicesAreStableAcrossInstalls) {
  RoutingTable table;
  table.Install(ThreeMasters(1));

  // A failed over to D: A leaves the topology, D is new.
  table.Install(Build({Entry(0, 5460, "10.0.0.4", 7000, "id-d"), Entry(5461, 10922, "10.0.0.2", 7000, "id-b"),
                       Entry(10923, 16383, "10.0.0.3", 7000, "id-c")},
                      2));
  ASSERT_EQ(table.node_count(), 4u);
  EXPECT_EQ(table.node(0).address, "10.0.0.1:7000") << "A keeps its index";
  EXPECT_FALSE(table.node(0).in_topology);
  EXPECT_EQ(table.node(3).address, "10.0.0.4:7000");
  EXPECT_TRUE(table.node(3).in_topology);
  EXPECT_THAT(table.masters(), ElementsAre(3, 1, 2)) << "in snapshot order, by stable index";
  EXPECT_EQ(table.NodeForSlot(0), 3);
  EXPECT_EQ(table.NodeForSlot(6000), 1);

  // A comes back as a master (listed last this time): same index as before.
  table.Install(Build({Entry(10923, 16383, "10.0.0.3", 7000, "id-c"), Entry(0, 10922, "10.0.0.1", 7000, "id-a")},
                      3));
  EXPECT_EQ(table.node_count(), 4u);
  EXPECT_TRUE(table.node(0).in_topology);
  EXPECT_FALSE(table.node(1).in_topology);
  EXPECT_FALSE(table.node(3).in_topology);
  EXPECT_THAT(table.masters(), ElementsAre(2, 0));
  EXPECT_EQ(table.NodeForSlot(6000), 0);
  EXPECT_EQ(table.version(), 3u);
}

TEST(RoutingTableTest, SetSlotReportsWhetherTheOwnerChanged) {
  RoutingTable table;
  table.Install(ThreeMasters());
  EXPECT_FALSE(table.SetSlot(100, 0)) << "MOVED to the node we already use";
  EXPECT_TRUE(table.SetSlot(100, 2));
  EXPECT_EQ(table.NodeForSlot(100), 2);
  EXPECT_EQ(table.NodeForSlot(99), 0) << "only that slot moves";
  EXPECT_EQ(table.NodeForSlot(101), 0);
  EXPECT_FALSE(table.SetSlot(100, 2));

  table.Install(ThreeMasters(2));
  EXPECT_EQ(table.NodeForSlot(100), 0) << "the next snapshot replaces local patches";
}

TEST(RoutingTableTest, FindOrAddNodeDedupsByAddress) {
  RoutingTable table;
  table.Install(ThreeMasters());
  EXPECT_EQ(table.FindOrAddNode("10.0.0.2", 7000), 1) << "a known node";
  EXPECT_EQ(table.node_count(), 3u);

  uint16_t other_port = table.FindOrAddNode("10.0.0.2", 7001);
  EXPECT_EQ(other_port, 3);
  uint16_t v6 = table.FindOrAddNode("::1", 7000);
  EXPECT_EQ(v6, 4);
  EXPECT_EQ(table.node(v6).address, "[::1]:7000");
  EXPECT_EQ(table.node(v6).host, "::1");
  EXPECT_EQ(table.node(v6).port, 7000);
  EXPECT_FALSE(table.node(v6).in_topology) << "named by a MOVED, not by a snapshot";
  EXPECT_TRUE(table.node(v6).id.empty());
  EXPECT_EQ(table.FindOrAddNode("::1", 7000), v6);
  EXPECT_EQ(table.FindOrAddNode("::1", 7001), 5);
  EXPECT_EQ(table.node_count(), 6u);
  EXPECT_THAT(table.masters(), ElementsAre(0, 1, 2)) << "adding a node does not make it a master";

  // A MOVED points a slot at the new node; the next snapshot lists it: same index, now a master.
  EXPECT_TRUE(table.SetSlot(42, other_port));
  table.Install(Build({Entry(0, 16383, "10.0.0.2", 7001, "id-x")}, 2));
  EXPECT_EQ(table.node_count(), 6u);
  EXPECT_THAT(table.masters(), ElementsAre(other_port));
  EXPECT_TRUE(table.node(other_port).in_topology);
  EXPECT_EQ(table.node(other_port).id, "id-x");
  EXPECT_EQ(table.NodeForSlot(42), other_port);
}

TEST(RoutingTableTest, Ipv6MastersFromASnapshot) {
  RoutingTable table;
  table.Install(Build({Entry(0, 16383, "2001:db8::1", 6379, "id-6")}, 1));
  EXPECT_EQ(table.node(0).address, "[2001:db8::1]:6379");
  EXPECT_EQ(table.FindOrAddNode("2001:db8::1", 6379), 0);
}

TEST(RoutingTableTest, AFullNodeTableRefusesNewAddressesInsteadOfWrappingAnIndex) {
  RoutingTable table;
  for (size_t i = 0; i < RoutingTable::kMaxNodes; ++i) {
    ASSERT_EQ(table.FindOrAddNode("10.1.0.1", static_cast<uint16_t>(i)), i);
  }
  EXPECT_EQ(table.node_count(), RoutingTable::kMaxNodes);
  EXPECT_EQ(table.FindOrAddNode("10.2.0.1", 1), RoutingTable::kNoNode);
  EXPECT_EQ(table.FindOrAddNode("10.2.0.1", 1), RoutingTable::kNoNode);  // ten times past: same
  EXPECT_EQ(table.FindOrAddNode("10.1.0.1", 7), 7);                       // known ones still resolve
  // A snapshot naming a master the table cannot hold leaves its slots unrouted, not misrouted.
  table.Install(Build({Entry(0, 99, "10.1.0.1", 3, "id-a"), Entry(100, 16383, "10.3.0.1", 1, "id-b")}, 2));
  EXPECT_EQ(table.NodeForSlot(0), 3);
  EXPECT_EQ(table.NodeForSlot(100), RoutingTable::kNoNode);
}

}  // namespace
}  // namespace slotpilot::proxy
