#include "protocol/topology.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "migration/redis_client.h"
#include "protocol/resp.h"
#include "tests/support/redis_server.h"

namespace slotpilot::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// 40-hex node ids for hand-written replies.
const std::string kIdA = "c84b5a1e9a7e1bbf9c6d2f0e4d1a3b5c7e9f0a21";
const std::string kIdB = "7978f2a96b1e1c0b3a4d5e6f708192a3b4c5d6e7";
const std::string kIdC = "0e3a7b9c1d2f4a6b8c0d2e4f6a8b0c2d4e6f8a01";
const std::string kIdD = "d1d2d3d4d5d6d7d8d9d0e1e2e3e4e5e6e7e8e9e0";

// ---------------------------------------------------------------------------------------------
// RespValue builders

RespValue Int(int64_t v) {
  RespValue value;
  value.type = ReplyType::kInteger;
  value.integer = v;
  return value;
}
RespValue Text(ReplyType type, std::string s) {
  RespValue value;
  value.type = type;
  value.str = std::move(s);
  return value;
}
RespValue Bulk(std::string s) { return Text(ReplyType::kBulk, std::move(s)); }
RespValue Err(std::string s) { return Text(ReplyType::kError, std::move(s)); }
RespValue Arr(std::vector<RespValue> elements) {
  RespValue value;
  value.type = ReplyType::kArray;
  value.elements = std::move(elements);
  return value;
}

slotpilot::testing::RedisServerOptions ClusterEnabled() {
  slotpilot::testing::RedisServerOptions options;
  options.cluster_enabled = true;
  return options;
}

// ---------------------------------------------------------------------------------------------
// CLUSTER SLOTS

TEST(TopologySlots, Redis7EntryWithMetadataAndReplica) {
  RespValue reply = Arr({
      Arr({Int(0), Int(5460), Arr({Bulk("127.0.0.1"), Int(30001), Bulk(kIdA), Arr({})}),
           Arr({Bulk("127.0.0.1"), Int(30004), Bulk(kIdD), Arr({Bulk("hostname"), Bulk("r4")})})}),
      Arr({Int(5461), Int(16383), Arr({Bulk("10.0.0.2"), Int(30002), Bulk(kIdB), Arr({})})}),
  });
  auto entries = ParseClusterSlots(reply);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].range, (SlotRange{0, 5460}));
  EXPECT_EQ((*entries)[0].master, (NodeEndpoint{"127.0.0.1", 30001, kIdA}));
  EXPECT_THAT((*entries)[0].replicas, ElementsAre(NodeEndpoint{"127.0.0.1", 30004, kIdD}));
  EXPECT_EQ((*entries)[1].range, (SlotRange{5461, 16383}));
  EXPECT_EQ((*entries)[1].master, (NodeEndpoint{"10.0.0.2", 30002, kIdB}));
  EXPECT_THAT((*entries)[1].replicas, IsEmpty());
}

TEST(TopologySlots, OlderServerWithoutId) {
  RespValue reply = Arr({Arr({Int(7), Int(7), Arr({Bulk("127.0.0.1"), Int(7000)})})});
  auto entries = ParseClusterSlots(reply);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].range, (SlotRange{7, 7}));
  EXPECT_EQ((*entries)[0].master, (NodeEndpoint{"127.0.0.1", 7000, ""}));
}

TEST(TopologySlots, EmptyAndUnknownHosts) {
  RespValue reply = Arr({
      Arr({Int(0), Int(1), Arr({Bulk(""), Int(7000), Bulk(kIdA), Arr({})})}),
      Arr({Int(2), Int(3), Arr({Bulk("?"), Int(7001), Bulk(kIdB), Arr({})})}),
  });
  auto entries = ParseClusterSlots(reply);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_EQ((*entries)[0].master.host, "");
  EXPECT_EQ((*entries)[1].master.host, "?");
}

TEST(TopologySlots, EmptyReplyIsNoEntries) {
  auto entries = ParseClusterSlots(Arr({}));
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_THAT(*entries, IsEmpty());
}

TEST(TopologySlots, RejectsMalformed) {
  const RespValue node = Arr({Bulk("127.0.0.1"), Int(7000), Bulk(kIdA)});
  const RespValue bad[] = {
      Bulk("not an array"),
      Err("ERR This instance has cluster support disabled"),
      Arr({Arr({Int(0), Int(5)})}),                    // no master
      Arr({Arr({Int(0), Int(16384), node})}),          // slot out of range
      Arr({Arr({Int(-1), Int(5), node})}),             // negative slot
      Arr({Arr({Int(10), Int(5), node})}),             // first > last
      Arr({Arr({Bulk("x"), Int(5), node})}),           // non-numeric slot
      Arr({Arr({Int(0), Int(5), Bulk("node")})}),      // node not an array
      Arr({Arr({Int(0), Int(5), Arr({Bulk("h")})})}),  // node without port
      Arr({Arr({Int(0), Int(5), Arr({Bulk("h"), Int(70000)})})}),
      Arr({Arr({Int(0), Int(5), Arr({Int(1), Int(7000)})})}),             // host not a string
      Arr({Arr({Int(0), Int(5), Arr({Bulk("h"), Int(7000), Int(3)})})}),  // id not a string
      Arr({Int(3)}),                                                      // entry not an array
  };
  for (size_t i = 0; i < std::size(bad); ++i) {
    EXPECT_FALSE(ParseClusterSlots(bad[i]).ok()) << "case " << i;
  }
}

TEST(TopologySlots, ErrorNamesTheEntry) {
  RespValue reply = Arr({Arr({Int(0), Int(1), Arr({Bulk("h"), Int(1)})}),
                         Arr({Int(9), Int(2), Arr({Bulk("h"), Int(1)})})});
  EXPECT_THAT(std::string(ParseClusterSlots(reply).status().message()), HasSubstr("entry 1"));
}

// ---------------------------------------------------------------------------------------------
// CLUSTER SHARDS

RespValue ShardNodeReply(const std::string& id, int64_t port, std::string ip, std::string endpoint,
                         std::string role) {
  return Arr({Bulk("id"), Bulk(id), Bulk("port"), Int(port), Bulk("ip"), Bulk(std::move(ip)),
              Bulk("endpoint"), Bulk(std::move(endpoint)), Bulk("role"), Bulk(std::move(role)),
              Bulk("replication-offset"), Int(72156), Bulk("health"), Bulk("online")});
}

TEST(TopologyShards, Redis7Shard) {
  RespValue reply = Arr({Arr({
      Bulk("slots"),
      Arr({Int(0), Int(5460), Int(6000), Int(6001)}),
      Bulk("nodes"),
      Arr({ShardNodeReply(kIdA, 30001, "127.0.0.1", "127.0.0.1", "master"),
           ShardNodeReply(kIdD, 30004, "127.0.0.1", "redis-4.local", "replica")}),
  })});
  auto shards = ParseClusterShards(reply);
  ASSERT_TRUE(shards.ok()) << shards.status();
  ASSERT_EQ(shards->size(), 1u);
  const Shard& shard = (*shards)[0];
  EXPECT_THAT(shard.slots, ElementsAre(SlotRange{0, 5460}, SlotRange{6000, 6001}));
  ASSERT_EQ(shard.nodes.size(), 2u);
  EXPECT_EQ(shard.nodes[0].endpoint, (NodeEndpoint{"127.0.0.1", 30001, kIdA}));
  EXPECT_EQ(shard.nodes[0].role, "master");
  EXPECT_EQ(shard.nodes[0].health, "online");
  EXPECT_EQ(shard.nodes[0].replication_offset, 72156);
  EXPECT_EQ(shard.nodes[1].endpoint, (NodeEndpoint{"redis-4.local", 30004, kIdD}));
  EXPECT_EQ(shard.nodes[1].role, "replica");
}

TEST(TopologyShards, HostFallsBackToIpAndTlsPort) {
  RespValue node = Arr({Bulk("id"), Bulk(kIdB), Bulk("tls-port"), Int(31002), Bulk("ip"),
                        Bulk("10.0.0.2"), Bulk("hostname"), Bulk("b.local"),
                        Bulk("some-future-key"), Arr({}), Bulk("role"), Bulk("master")});
  RespValue reply = Arr({Arr({Bulk("slots"), Arr({}), Bulk("nodes"), Arr({node})})});
  auto shards = ParseClusterShards(reply);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_THAT((*shards)[0].slots, IsEmpty());
  EXPECT_EQ((*shards)[0].nodes[0].endpoint, (NodeEndpoint{"10.0.0.2", 31002, kIdB}));
}

TEST(TopologyShards, RejectsMalformed) {
  RespValue good_node = ShardNodeReply(kIdA, 1, "h", "h", "master");
  auto shard = [](RespValue slots, RespValue nodes) {
    return Arr({Arr({Bulk("slots"), std::move(slots), Bulk("nodes"), std::move(nodes)})});
  };
  const RespValue bad[] = {
      Err("ERR unknown subcommand 'shards'"),
      Int(1),
      Arr({Arr({Bulk("slots")})}),                                                  // odd map
      Arr({Arr({Bulk("slots"), Arr({})})}),                                         // no nodes
      Arr({Arr({Bulk("nodes"), Arr({good_node})})}),                                // no slots
      shard(Arr({Int(0)}), Arr({good_node})),                                       // odd slot list
      shard(Arr({Int(5), Int(1)}), Arr({good_node})),                               // first > last
      shard(Arr({Int(0), Int(16384)}), Arr({good_node})),                           // out of range
      shard(Arr({}), Arr({Arr({Bulk("id"), Bulk(kIdA), Bulk("ip"), Bulk("h")})})),  // no port
      shard(Arr({}), Arr({Arr({Bulk("port"), Int(1), Bulk("ip"), Bulk("h")})})),    // no id
      shard(Arr({}), Arr({Arr({Bulk("id"), Bulk(kIdA), Bulk("port"), Int(1)})})),   // no host
      shard(Arr({}), Arr({Arr({Bulk("id"), Bulk(kIdA), Bulk("port"), Bulk("x"), Bulk("ip"),
                               Bulk("h")})})),  // bad port
      shard(Arr({}), Bulk("nodes")),
  };
  for (size_t i = 0; i < std::size(bad); ++i) {
    EXPECT_FALSE(ParseClusterShards(bad[i]).ok()) << "case " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// CLUSTER NODES, hand-written

TEST(TopologyNodes, LabLinesFromMigrationDoc) {
  // MIGRATION.md A.1 (S3): each node shows its open slot only on its own myself line.
  const std::string a = absl::StrCat(kIdA,
                                     " 127.0.0.1:31001@41001 myself,master - 0 1700000000000"
                                     " 1 connected 0-5460 [490->-",
                                     kIdB, "]\n");
  const std::string b = absl::StrCat(kIdB,
                                     " 127.0.0.1:31002@41002 myself,master - 0 1700000000000"
                                     " 2 connected 5461-10922 [490-<-",
                                     kIdA, "]\n");
  auto from_a = ParseClusterNodes(a);
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_EQ(from_a->size(), 1u);
  const ClusterNode& na = (*from_a)[0];
  EXPECT_EQ(na.id, kIdA);
  EXPECT_EQ(na.host, "127.0.0.1");
  EXPECT_EQ(na.port, 31001);
  EXPECT_EQ(na.bus_port, 41001);
  EXPECT_EQ(na.flags, kFlagMyself | kFlagMaster);
  EXPECT_EQ(na.master_id, "");
  EXPECT_EQ(na.ping_sent, 0);
  EXPECT_EQ(na.pong_received, 1700000000000);
  EXPECT_EQ(na.config_epoch, 1u);
  EXPECT_TRUE(na.connected);
  EXPECT_THAT(na.slots, ElementsAre(SlotRange{0, 5460}));
  EXPECT_THAT(na.migrating, ElementsAre(OpenSlot{490, kIdB}));
  EXPECT_THAT(na.importing, IsEmpty());

  auto from_b = ParseClusterNodes(b);
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  const ClusterNode& nb = (*from_b)[0];
  EXPECT_EQ(nb.config_epoch, 2u);
  EXPECT_THAT(nb.slots, ElementsAre(SlotRange{5461, 10922}));
  EXPECT_THAT(nb.importing, ElementsAre(OpenSlot{490, kIdA}));
  EXPECT_THAT(nb.migrating, IsEmpty());
}

TEST(TopologyNodes, FullClusterWithReplicasAndManyMarkers) {
  const std::string text = absl::StrCat(
      kIdA, " 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-100 102 104-5460 [101->-",
      kIdB, "] [103->-", kIdC, "] [5461-<-", kIdB, "]\n", kIdB,
      " 127.0.0.1:30002@40002 master - 0 1700000000123 2 connected 5461-10922\n", kIdC,
      " 127.0.0.1:30003@40003 master - 0 1700000000456 3 connected 10923-16383\n", kIdD,
      " 127.0.0.1:30004@40004 slave ", kIdA, " 0 1700000000789 1 connected\n");
  auto nodes = ParseClusterNodes(text);
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 4u);
  const ClusterNode& a = (*nodes)[0];
  EXPECT_THAT(a.slots, ElementsAre(SlotRange{0, 100}, SlotRange{102, 102}, SlotRange{104, 5460}));
  EXPECT_THAT(a.migrating, ElementsAre(OpenSlot{101, kIdB}, OpenSlot{103, kIdC}));
  EXPECT_THAT(a.importing, ElementsAre(OpenSlot{5461, kIdB}));
  EXPECT_EQ((*nodes)[2].config_epoch, 3u);
  const ClusterNode& d = (*nodes)[3];
  EXPECT_EQ(d.flags, kFlagReplica);
  EXPECT_TRUE(d.has(kFlagReplica));
  EXPECT_FALSE(d.has(kFlagMaster));
  EXPECT_EQ(d.master_id, kIdA);
  EXPECT_THAT(d.slots, IsEmpty());
}

struct FlagCase {
  std::string flags;
  uint32_t expected;
};

TEST(TopologyNodes, EveryFlag) {
  const FlagCase cases[] = {
      {"myself,master", kFlagMyself | kFlagMaster},
      {"myself,slave", kFlagMyself | kFlagReplica},
      {"master", kFlagMaster},
      {"slave", kFlagReplica},
      {"master,fail?", kFlagMaster | kFlagPfail},
      {"master,fail", kFlagMaster | kFlagFail},
      {"handshake", kFlagHandshake},
      {"master,noaddr", kFlagMaster | kFlagNoAddr},
      {"slave,nofailover", kFlagReplica | kFlagNoFailover},
      {"noflags", kFlagNoFlags},
      {"master,fail,noaddr", kFlagMaster | kFlagFail | kFlagNoAddr},
      {"master,some-future-flag", kFlagMaster},  // unknown flags are skipped
  };
  for (const FlagCase& c : cases) {
    const std::string line =
        absl::StrCat(kIdB, " 127.0.0.1:30002@40002 ", c.flags, " - 0 0 0 disconnected");
    auto nodes = ParseClusterNodes(line);
    ASSERT_TRUE(nodes.ok()) << c.flags << ": " << nodes.status();
    EXPECT_EQ((*nodes)[0].flags, c.expected) << c.flags;
    EXPECT_FALSE((*nodes)[0].connected);
  }
}

TEST(TopologyNodes, NoAddrNode) {
  // A node that failed and was forgotten by address: Redis prints ":0@0".
  const std::string line =
      absl::StrCat(kIdC, " :0@0 master,fail,noaddr - 1700000000000 1699999999000 3 disconnected");
  auto nodes = ParseClusterNodes(line);
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  const ClusterNode& n = (*nodes)[0];
  EXPECT_EQ(n.host, "");
  EXPECT_EQ(n.port, 0);
  EXPECT_EQ(n.bus_port, 0);
  EXPECT_TRUE(n.has(kFlagNoAddr));
  EXPECT_TRUE(n.has(kFlagFail));
  EXPECT_EQ(n.ping_sent, 1700000000000);
  EXPECT_EQ(n.pong_received, 1699999999000);
}

TEST(TopologyNodes, MyselfWithoutKnownIp) {
  // A fresh node that has not learned its own address yet.
  auto nodes =
      ParseClusterNodes(absl::StrCat(kIdA, " :6379@16379 myself,master - 0 0 0 connected"));
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_EQ((*nodes)[0].host, "");
  EXPECT_EQ((*nodes)[0].port, 6379);
}

TEST(TopologyNodes, HostnameAndIpv6) {
  const std::string text = absl::StrCat(
      kIdA, " 10.0.0.1:6379@16379,redis-0.example myself,master - 0 0 1 connected 0-16383\n", kIdB,
      " ::1:7000@17000 slave ", kIdA, " 0 0 1 connected\n", kIdC, " [fe80::1]:7001@17001 slave ",
      kIdA, " 0 0 1 connected\n", kIdC, " 10.0.0.3:6379@16379, slave ", kIdA,
      " 0 0 1 connected\n",  // empty hostname
      kIdD, " 10.0.0.4:6379@16379,,shard-id=abc,tls-port=0 slave ", kIdA, " 0 0 1 connected\n");
  auto nodes = ParseClusterNodes(text);
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 5u);
  EXPECT_EQ((*nodes)[0].host, "10.0.0.1");
  EXPECT_EQ((*nodes)[0].hostname, "redis-0.example");
  EXPECT_EQ((*nodes)[1].host, "::1");
  EXPECT_EQ((*nodes)[1].port, 7000);
  EXPECT_EQ((*nodes)[1].bus_port, 17000);
  EXPECT_EQ((*nodes)[1].hostname, "");
  EXPECT_EQ((*nodes)[2].host, "fe80::1");  // brackets are not Redis's format, but tolerated
  EXPECT_EQ((*nodes)[2].port, 7001);
  EXPECT_EQ((*nodes)[3].hostname, "");
  EXPECT_EQ((*nodes)[4].host, "10.0.0.4");
}

TEST(TopologyNodes, ToleratesBlankLinesCrlfAndTrailingNewline) {
  const std::string text =
      absl::StrCat("\n", kIdA, " 127.0.0.1:1@2 myself,master - 0 0 1 connected 5\r\n", "\n  \n",
                   kIdB, " 127.0.0.1:3@4 master - 0 0 2 connected 6\n\n");
  auto nodes = ParseClusterNodes(text);
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_THAT((*nodes)[0].slots, ElementsAre(SlotRange{5, 5}));
  EXPECT_THAT((*nodes)[1].slots, ElementsAre(SlotRange{6, 6}));
}

TEST(TopologyNodes, EmptyTextIsNoNodes) {
  auto nodes = ParseClusterNodes("");
  ASSERT_TRUE(nodes.ok());
  EXPECT_THAT(*nodes, IsEmpty());
}

TEST(TopologyNodes, SlotBounds) {
  auto nodes = ParseClusterNodes(absl::StrCat(
      kIdA, " h:1@2 myself,master - 0 0 1 connected 0 16383 0-16383 [16383->-", kIdB, "]"));
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_THAT((*nodes)[0].slots,
              ElementsAre(SlotRange{0, 0}, SlotRange{16383, 16383}, SlotRange{0, 16383}));
  EXPECT_THAT((*nodes)[0].migrating, ElementsAre(OpenSlot{16383, kIdB}));
}

TEST(TopologyNodes, RejectsMalformedLines) {
  const std::string prefix = absl::StrCat(kIdA, " 127.0.0.1:1@2 myself,master - 0 0 1 connected");
  const std::string bad[] = {
      "c84b 127.0.0.1:1@2 master - 0 0 1 connected",                                   // short id
      absl::StrCat(std::string(39, 'a'), "g 127.0.0.1:1@2 master - 0 0 1 connected"),  // non-hex id
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master - 0 0 1"),                             // 7 fields
      absl::StrCat(kIdA, " 127.0.0.1@2 master - 0 0 1 connected"),                     // no port
      absl::StrCat(kIdA, " 127.0.0.1:70000@2 master - 0 0 1 connected"),
      absl::StrCat(kIdA, " 127.0.0.1:1@x master - 0 0 1 connected"),
      absl::StrCat(kIdA, " [[::1]]:1@2 master - 0 0 1 connected"),  // brackets
      absl::StrCat(kIdA, " [::1:1@2 master - 0 0 1 connected"),
      absl::StrCat(kIdA, " 127.0.0.1:1@2,h,junk master - 0 0 1 connected"),  // bad aux
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master,,slave - 0 0 1 connected"),  // empty flag
      absl::StrCat(kIdA, " 127.0.0.1:1@2 slave abc 0 0 1 connected"),        // master id
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master - x 0 1 connected"),         // ping
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master - 0 -5 1 connected"),        // pong
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master - 0 0 -1 connected"),        // epoch
      absl::StrCat(kIdA, " 127.0.0.1:1@2 master - 0 0 1 up"),                // link state
      absl::StrCat(prefix, " 16384"),
      absl::StrCat(prefix, " 10-5"),
      absl::StrCat(prefix, " 5-"),
      absl::StrCat(prefix, " -5"),
      absl::StrCat(prefix, " 1-2-3"),
      absl::StrCat(prefix, " +5"),
      absl::StrCat(prefix, " 0-16384"),
      absl::StrCat(prefix, " [100->-", kIdB),         // no ']'
      absl::StrCat(prefix, " [100-x-", kIdB, "]"),    // bad arrow
      absl::StrCat(prefix, " [100->-abc]"),           // bad peer id
      absl::StrCat(prefix, " [16384->-", kIdB, "]"),  // slot out of range
      absl::StrCat(prefix, " [->-", kIdB, "]"),       // no slot
      absl::StrCat(prefix, " []"),
      absl::StrCat(prefix, " ["),
      // Open markers are printed on the myself line only.
      absl::StrCat(kIdB, " 127.0.0.1:3@4 master - 0 0 2 connected 1 [100->-", kIdA, "]"),
      absl::StrCat(kIdB, " 127.0.0.1:3@4 master - 0 0 2 connected [100-<-", kIdA, "]"),
      // Only one node can be "myself".
      absl::StrCat(prefix, "\n", prefix),
  };
  for (const std::string& text : bad) {
    EXPECT_EQ(ParseClusterNodes(text).status().code(), absl::StatusCode::kInvalidArgument)
        << "accepted: " << text;
  }
}

TEST(TopologyNodes, ErrorNamesTheLineNumber) {
  const std::string text =
      absl::StrCat(kIdA, " 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-100\n", "\n", kIdB,
                   " 127.0.0.1:3@4 master - 0 0 2 connected 101-99999\n");
  absl::Status status = ParseClusterNodes(text).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("line 3")) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("101-99999")) << status;
}

// ---------------------------------------------------------------------------------------------
// Live: a 3-master cluster built by hand, with slot 100 open from A to B.

class TopologyLive : public ::testing::Test {
 protected:
  struct Node {
    std::unique_ptr<slotpilot::testing::RedisServer> server;
    std::unique_ptr<migration::RedisClient> client;
    std::string id;
  };

  void SetUp() override {
    for (Node& node : nodes_) {
      auto server = slotpilot::testing::RedisServer::Start(ClusterEnabled());
      ASSERT_TRUE(server.ok()) << server.status();
      node.server = *std::move(server);
      auto client = node.server->Connect();
      ASSERT_TRUE(client.ok()) << client.status();
      node.client = *std::move(client);
      node.id = Must({"CLUSTER", "MYID"}, node).str;
      ASSERT_EQ(node.id.size(), 40u);
    }
  }

  RespValue Must(std::initializer_list<std::string_view> args, Node& node) {
    auto reply = node.client->Command(args);
    EXPECT_TRUE(reply.ok()) << reply.status();
    if (!reply.ok()) return {};
    EXPECT_FALSE(reply->is_error()) << reply->str;
    return *std::move(reply);
  }

  bool AllClusterStatesOk() {
    for (Node& node : nodes_) {
      auto info = node.client->Command({"CLUSTER", "INFO"});
      if (!info.ok() || info->str.find("cluster_state:ok") == std::string::npos) return false;
    }
    return true;
  }

  // The ranges each master is given, in node order.
  static constexpr SlotRange kRanges[3] = {{0, 5460}, {5461, 10922}, {10923, 16383}};
  Node nodes_[3];
};

TEST_F(TopologyLive, ParsersAgreeWithARealCluster) {
  Node& a = nodes_[0];
  Node& b = nodes_[1];
  for (int i = 1; i < 3; ++i) {
    Must({"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes_[i].server->port())}, a);
  }
  for (int i = 0; i < 3; ++i) {
    Must({"CLUSTER", "ADDSLOTSRANGE", std::to_string(kRanges[i].first),
          std::to_string(kRanges[i].last)},
         nodes_[i]);
  }
  // Redis holds cluster_state at fail for ~2 s after start (CLUSTER_WRITABLE_DELAY).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!AllClusterStatesOk()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "cluster never reached state ok";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Must({"CLUSTER", "SETSLOT", "100", "IMPORTING", a.id}, b);
  Must({"CLUSTER", "SETSLOT", "100", "MIGRATING", b.id}, a);

  // CLUSTER SLOTS: entry order follows the server's node dict, so sort by range.
  auto entries = ParseClusterSlots(Must({"CLUSTER", "SLOTS"}, a));
  ASSERT_TRUE(entries.ok()) << entries.status();
  std::sort(entries->begin(), entries->end(),
            [](const SlotsEntry& x, const SlotsEntry& y) { return x.range.first < y.range.first; });
  ASSERT_EQ(entries->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*entries)[i].range, kRanges[i]);
    EXPECT_EQ(
        (*entries)[i].master,
        (NodeEndpoint{"127.0.0.1", static_cast<uint16_t>(nodes_[i].server->port()), nodes_[i].id}));
    EXPECT_THAT((*entries)[i].replicas, IsEmpty());
  }

  // CLUSTER SHARDS: one shard per master, in no particular order.
  auto shards = ParseClusterShards(Must({"CLUSTER", "SHARDS"}, a));
  ASSERT_TRUE(shards.ok()) << shards.status();
  ASSERT_EQ(shards->size(), 3u);
  for (const Shard& shard : *shards) {
    ASSERT_EQ(shard.nodes.size(), 1u);
    const ShardNode& master = shard.nodes[0];
    auto it = std::find_if(std::begin(nodes_), std::end(nodes_),
                           [&](const Node& n) { return n.id == master.endpoint.id; });
    ASSERT_NE(it, std::end(nodes_)) << master.endpoint.id;
    const int i = static_cast<int>(it - std::begin(nodes_));
    EXPECT_THAT(shard.slots, ElementsAre(kRanges[i]));
    EXPECT_EQ(master.endpoint,
              (NodeEndpoint{"127.0.0.1", static_cast<uint16_t>(it->server->port()), it->id}));
    EXPECT_EQ(master.role, "master");
    EXPECT_EQ(master.health, "online");
  }

  // CLUSTER NODES: the open slot shows only on the myself line of each side.
  for (int side = 0; side < 2; ++side) {
    Node& self = nodes_[side];
    const std::string text = Must({"CLUSTER", "NODES"}, self).str;
    auto parsed = ParseClusterNodes(text);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
    ASSERT_EQ(parsed->size(), 3u) << text;
    for (const ClusterNode& n : *parsed) {
      SCOPED_TRACE(text);
      auto it = std::find_if(std::begin(nodes_), std::end(nodes_),
                             [&](const Node& x) { return x.id == n.id; });
      ASSERT_NE(it, std::end(nodes_));
      const int i = static_cast<int>(it - std::begin(nodes_));
      EXPECT_EQ(n.port, it->server->port());
      EXPECT_EQ(n.bus_port, it->server->port() + 10000);
      EXPECT_TRUE(n.has(kFlagMaster));
      // n.connected is not checked: a node's outbound link to a peer it learned by gossip may
      // still be reconnecting after cluster_state turns ok (seen ~1 run in 25).
      EXPECT_THAT(n.slots, ElementsAre(kRanges[i]));
      EXPECT_EQ(n.has(kFlagMyself), i == side);
      const std::vector<OpenSlot> none;
      const std::vector<OpenSlot> to_b = {OpenSlot{100, b.id}};
      const std::vector<OpenSlot> from_a = {OpenSlot{100, a.id}};
      EXPECT_EQ(n.migrating, i == side && side == 0 ? to_b : none);
      EXPECT_EQ(n.importing, i == side && side == 1 ? from_a : none);
    }
  }
}

}  // namespace
}  // namespace slotpilot::protocol
