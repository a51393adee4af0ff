#include "proxy/topology.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "protocol/slot.h"
#include "protocol/strings.h"
#include "protocol/topology.h"

namespace slotpilot::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using protocol::NodeEndpoint;
using protocol::SlotsEntry;

SlotsEntry Entry(uint16_t first, uint16_t last, std::string host, uint16_t port, std::string id = "",
                 std::vector<NodeEndpoint> replicas = {}) {
  return SlotsEntry{{first, last}, NodeEndpoint{std::move(host), port, std::move(id)}, std::move(replicas)};
}

std::string Message(const absl::Status& status) { return std::string(AsStd(status.message())); }

TEST(FormatAddressTest, HostPortWithBracketsForIpv6) {
  EXPECT_EQ(FormatAddress("10.0.0.1", 6379), "10.0.0.1:6379");
  EXPECT_EQ(FormatAddress("redis-0.redis.svc", 7000), "redis-0.redis.svc:7000");
  EXPECT_EQ(FormatAddress("::1", 7000), "[::1]:7000");
  EXPECT_EQ(FormatAddress("2001:db8::7", 65535), "[2001:db8::7]:65535");
  EXPECT_EQ(FormatAddress("", 0), ":0");
  EXPECT_EQ((TopologyNode{"fe80::1", 6380, "", {}}).Address(), "[fe80::1]:6380");
}

TEST(BuildTopologyTest, MastersInOrderWithTheirSlots) {
  std::vector<SlotsEntry> entries = {
      Entry(0, 5460, "10.0.0.1", 7000, "id-a", {NodeEndpoint{"10.0.0.4", 7003, "id-d"}}),
      Entry(5461, 10922, "10.0.0.2", 7001, "id-b"),
      Entry(10923, 16383, "10.0.0.3", 7002, "id-c",
            {NodeEndpoint{"10.0.0.5", 7004, "id-e"}, NodeEndpoint{"10.0.0.6", 7005, "id-f"}}),
  };
  absl::StatusOr<Topology> t = BuildTopology(entries, "10.0.0.1");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->masters.size(), 3u);
  EXPECT_EQ(t->masters[0].Address(), "10.0.0.1:7000");
  EXPECT_EQ(t->masters[0].id, "id-a");
  EXPECT_THAT(t->masters[0].replicas, ElementsAre(NodeEndpoint{"10.0.0.4", 7003, "id-d"}));
  EXPECT_EQ(t->masters[1].Address(), "10.0.0.2:7001");
  EXPECT_TRUE(t->masters[1].replicas.empty());
  EXPECT_EQ(t->masters[2].host, "10.0.0.3");
  EXPECT_EQ(t->masters[2].port, 7002);
  EXPECT_EQ(t->masters[2].replicas.size(), 2u);

  EXPECT_EQ(t->assigned_slots, protocol::kSlotCount);
  EXPECT_EQ(t->slot_master[0], 0);
  EXPECT_EQ(t->slot_master[5460], 0);
  EXPECT_EQ(t->slot_master[5461], 1);
  EXPECT_EQ(t->slot_master[10922], 1);
  EXPECT_EQ(t->slot_master[10923], 2);
  EXPECT_EQ(t->slot_master[16383], 2);
}

TEST(BuildTopologyTest, SeveralRangesOfOneMasterAndUnassignedSlots) {
  std::vector<SlotsEntry> entries = {
      Entry(0, 99, "a", 1),
      Entry(200, 299, "b", 2),
      Entry(100, 100, "a", 1),
      Entry(16000, 16383, "a", 1),
  };
  absl::StatusOr<Topology> t = BuildTopology(entries, "a");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->masters.size(), 2u) << "one master per address";
  EXPECT_EQ(t->assigned_slots, 100 + 100 + 1 + 384);
  EXPECT_EQ(t->slot_master[100], 0);
  EXPECT_EQ(t->slot_master[101], -1);
  EXPECT_EQ(t->slot_master[199], -1);
  EXPECT_EQ(t->slot_master[250], 1);
  EXPECT_EQ(t->slot_master[15999], -1);
  EXPECT_EQ(t->slot_master[16000], 0);
  int unassigned = 0;
  for (int16_t m : t->slot_master) unassigned += m == -1;
  EXPECT_EQ(unassigned, protocol::kSlotCount - t->assigned_slots);
}

TEST(BuildTopologyTest, UnknownOrEmptyHostIsTheAnsweringHost) {
  std::vector<SlotsEntry> entries = {
      Entry(0, 10, "", 7000, "id-a"),
      Entry(11, 20, "?", 7000, "id-a"),
      Entry(21, 30, "?", 7001, "id-b"),
      Entry(31, 40, "10.0.0.9", 7000),
  };
  absl::StatusOr<Topology> t = BuildTopology(entries, "10.0.0.1");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->masters.size(), 3u);
  EXPECT_EQ(t->masters[0].Address(), "10.0.0.1:7000") << "\"\" and \"?\" on one port: one node";
  EXPECT_EQ(t->masters[1].Address(), "10.0.0.1:7001");
  EXPECT_EQ(t->masters[2].Address(), "10.0.0.9:7000");
  EXPECT_EQ(t->slot_master[15], 0);
  EXPECT_EQ(t->assigned_slots, 41);

  absl::StatusOr<Topology> v6 = BuildTopology({Entry(0, 16383, "?", 7000)}, "::1");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->masters[0].host, "::1");
  EXPECT_EQ(v6->masters[0].Address(), "[::1]:7000");
}

TEST(BuildTopologyTest, SlotOwnedByTwoMastersIsRejected) {
  std::vector<SlotsEntry> entries = {
      Entry(0, 8191, "10.0.0.1", 7000),
      Entry(8000, 16383, "10.0.0.2", 7000),
  };
  absl::StatusOr<Topology> t = BuildTopology(entries, "10.0.0.1");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(t.status()), HasSubstr("slot 8000"));

  // The answering host standing in for "?" counts as that node: still two masters.
  absl::StatusOr<Topology> hidden =
      BuildTopology({Entry(5, 5, "?", 7000), Entry(5, 5, "10.0.0.2", 7000)}, "10.0.0.1");
  EXPECT_FALSE(hidden.ok());
}

TEST(BuildTopologyTest, SameMasterListedTwiceIsAccepted) {
  std::vector<SlotsEntry> entries = {
      Entry(0, 100, "10.0.0.1", 7000),
      Entry(50, 150, "10.0.0.1", 7000),
      Entry(150, 150, "", 7000),  // the answering host is the same node
  };
  absl::StatusOr<Topology> t = BuildTopology(entries, "10.0.0.1");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->masters.size(), 1u);
  EXPECT_EQ(t->assigned_slots, 151) << "overlapping slots counted once";
}

TEST(BuildTopologyTest, NoMastersIsUnavailable) {
  absl::StatusOr<Topology> t = BuildTopology({}, "10.0.0.1");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnavailable);
}

TEST(BuildTopologyTest, SlotRangeOutsideTheSlotSpaceIsRejected) {
  // The CLUSTER SLOTS parser never produces these; BuildTopology must not trust its caller with
  // an index into the slot array.
  for (auto [first, last] : {std::pair<uint16_t, uint16_t>{16000, 16384}, {0, 65535}, {16384, 16384}, {10, 9}}) {
    absl::StatusOr<Topology> t = BuildTopology({Entry(0, 5, "a", 1), Entry(first, last, "b", 2)}, "a");
    ASSERT_FALSE(t.ok()) << first << "-" << last;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace slotpilot::proxy
