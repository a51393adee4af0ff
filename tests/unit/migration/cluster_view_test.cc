// ClusterView against live 3-master clusters (tests/support/test_cluster.h).
#include "migration/cluster_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/support/test_cluster.h"

namespace slotpilot::migration {
namespace {

using ::slotpilot::testing::TestCluster;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

ClusterViewOptions OptionsFor(TestCluster& c, std::vector<Endpoint> seeds = {}) {
  ClusterViewOptions o;
  o.seeds = seeds.empty() ? std::vector<Endpoint>{c.endpoint(0)} : std::move(seeds);
  o.client.connect_timeout = std::chrono::milliseconds(500);
  o.client.command_timeout = std::chrono::milliseconds(1000);
  return o;
}

// One cluster for the read-only tests of this file; each test uses its own slots and puts them
// back as it found them.
class ClusterViewLive : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = TestCluster::Start();
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }
  TestCluster& c() { return *cluster_; }

  static TestCluster* cluster_;
};
TestCluster* ClusterViewLive::cluster_ = nullptr;

TEST_F(ClusterViewLive, SeesEveryMasterAndTheirOwnViews) {
  ClusterView view(OptionsFor(c()));
  auto snap = view.Poll({});
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->masters.size(), 3u);
  std::string why;
  EXPECT_TRUE(snap->AllMastersHealthy(&why)) << why;
  EXPECT_THAT(snap->OpenSlots(), IsEmpty());
  EXPECT_THAT(snap->DisputedOrUnassignedSlots(), IsEmpty());
  EXPECT_THAT(snap->replicas, IsEmpty());
  for (int i = 0; i < 3; ++i) {
    const MasterView* m = snap->MasterById(c().id(i));
    ASSERT_NE(m, nullptr) << i;
    EXPECT_TRUE(m->reachable);
    EXPECT_FALSE(m->loading);
    EXPECT_EQ(m->endpoint.port, c().port(i));
    EXPECT_EQ(m->config_epoch, static_cast<uint64_t>(i + 1));
    EXPECT_EQ(m->info.state, "ok");
    EXPECT_EQ(m->info.slots_assigned, 16384);
    EXPECT_EQ(m->info.known_nodes, 3);
    EXPECT_GT(m->memory.used_memory, 0u);
    EXPECT_EQ(m->memory.maxmemory_policy, "noeviction");
    EXPECT_EQ(m->nodes.size(), 3u);
    EXPECT_EQ(m->flags_seen_by_others, 0u);
    for (int j = 0; j < 3; ++j) {
      const protocol::SlotRange r = c().InitialRange(j);
      EXPECT_EQ(m->OwnerId(r.first), c().id(j));
      EXPECT_EQ(m->OwnerId(r.last), c().id(j));
    }
  }
}

TEST_F(ClusterViewLive, OpenMarkersAreSeenOnTheRightNodesWithKeyCounts) {
  const uint16_t slot = 200;  // owned by node 0
  ASSERT_TRUE(c().FillSlot(slot, 12).ok());
  ASSERT_TRUE(c().SetImporting(1, slot, 0).ok());
  ASSERT_TRUE(c().SetMigrating(0, slot, 1).ok());
  auto moved = c().MigrateKeys(0, 1, slot, 5);
  ASSERT_TRUE(moved.ok()) << moved.status();
  ASSERT_EQ(*moved, 5);

  ClusterView view(OptionsFor(c(), {c().endpoint(2)}));  // enter through an uninvolved node
  auto snap = view.Poll({4000});
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_THAT(snap->OpenSlots(), ElementsAre(slot));
  EXPECT_TRUE(snap->counted_slots.count(slot));
  EXPECT_TRUE(snap->counted_slots.count(4000));  // extra slot asked by the caller
  const MasterView* a = snap->MasterById(c().id(0));
  const MasterView* b = snap->MasterById(c().id(1));
  const MasterView* third = snap->MasterById(c().id(2));
  ASSERT_TRUE(a && b && third);
  EXPECT_EQ(a->MigratingTo(slot), c().id(1));
  EXPECT_EQ(a->ImportingFrom(slot), std::nullopt);
  EXPECT_EQ(b->ImportingFrom(slot), c().id(0));
  EXPECT_EQ(b->MigratingTo(slot), std::nullopt);
  EXPECT_THAT(third->migrating, IsEmpty());
  EXPECT_THAT(third->importing, IsEmpty());
  EXPECT_EQ(a->KeysIn(slot), 7);
  EXPECT_EQ(b->KeysIn(slot), 5);
  EXPECT_EQ(third->KeysIn(slot), 0);
  EXPECT_EQ(a->KeysIn(4000), 0);
  EXPECT_EQ(a->KeysIn(201), -1);  // not asked
  for (const MasterView& m : snap->masters) EXPECT_EQ(m.OwnerId(slot), c().id(0));
  // MIGRATEs served by the source (INFO commandstats) grow with every batch: the detector's
  // evidence of a live migration, which client writes to either side never produce.
  EXPECT_GE(a->migrate_calls, 1);
  const int64_t calls = a->migrate_calls;
  ASSERT_TRUE(c().MigrateKeys(0, 1, slot, 1).ok());
  auto again = view.Poll({});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_NE(again->MasterById(c().id(0)), nullptr);
  EXPECT_GT(again->MasterById(c().id(0))->migrate_calls, calls);

  // Put the slot back: close A first (a MIGRATING A answers ASK to the RESTORE-ASKING of keys it
  // does not have), then move the keys home, then close B.
  ASSERT_TRUE(c().SetStable(0, slot).ok());
  while (true) {
    auto back = c().MigrateKeys(1, 0, slot, 100);
    ASSERT_TRUE(back.ok()) << back.status();
    if (*back == 0) break;
  }
  ASSERT_TRUE(c().StabilizeSlot(slot).ok());
}

TEST_F(ClusterViewLive, DisputedSlotIsCounted) {
  // S4a by hand (MIGRATION.md A.4): B importing, A gives the slot away with SETSLOT NODE B
  // (allowed, A has no keys), B still says A. A and B now disagree about the owner.
  const uint16_t slot = 300;
  ASSERT_TRUE(c().SetImporting(1, slot, 0).ok());
  ASSERT_TRUE(c().SetNode(0, slot, 1).ok());
  ClusterView view(OptionsFor(c()));
  auto snap = view.Poll({});
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_TRUE(snap->DisputedOrUnassignedSlots().count(slot));
  EXPECT_TRUE(snap->counted_slots.count(slot));
  EXPECT_EQ(snap->MasterById(c().id(0))->OwnerId(slot), c().id(1));
  EXPECT_EQ(snap->MasterById(c().id(1))->OwnerId(slot), c().id(0));
  // Finish it properly: B claims it (epoch bump), everyone follows.
  ASSERT_TRUE(c().SetNode(1, slot, 1).ok());
  ASSERT_TRUE(c().SetNode(2, slot, 1).ok());
  ASSERT_TRUE(c().WaitForAgreement(std::chrono::seconds(10)).ok());
  auto after = view.Poll({});
  ASSERT_TRUE(after.ok());
  EXPECT_THAT(after->DisputedOrUnassignedSlots(), IsEmpty());
  EXPECT_EQ(after->MasterById(c().id(2))->OwnerId(slot), c().id(1));
}

TEST_F(ClusterViewLive, CountingIsCapped) {
  ClusterViewOptions o = OptionsFor(c());
  o.max_counted_slots = 3;
  ClusterView view(o);
  auto snap = view.Poll({10, 11, 12, 13, 14});
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->counted_slots.size(), 3u);
  EXPECT_EQ(snap->uncounted_slots.size(), 2u);
}

TEST_F(ClusterViewLive, FallsBackThroughSeeds) {
  ClusterViewOptions o = OptionsFor(c(), {Endpoint{"127.0.0.1", 1}, c().endpoint(1)});
  ClusterView view(o);
  auto snap = view.Poll({});
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->entry, c().address(1));
  EXPECT_EQ(snap->masters.size(), 3u);

  ClusterView nothing(OptionsFor(c(), {Endpoint{"127.0.0.1", 1}}));
  auto none = nothing.Poll({});
  EXPECT_TRUE(absl::IsUnavailable(none.status())) << none.status();
}

TEST_F(ClusterViewLive, ClientIsCachedAndUsable) {
  ClusterView view(OptionsFor(c()));
  auto a = view.Client(c().endpoint(0));
  ASSERT_TRUE(a.ok());
  auto again = view.Client(c().endpoint(0));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*a, *again);
  auto pong = (*a)->Command({"PING"});
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(pong->str, "PONG");
}

// A cluster of its own: master 0 gets a replica, master 2 is stopped, master 1 paused.
TEST(ClusterViewUnreachable, StoppedMasterIsReportedAndUnhealthy) {
  auto started = TestCluster::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  TestCluster& c = **started;
  auto replica = c.AddReplica(0);
  ASSERT_TRUE(replica.ok()) << replica.status();
  ClusterView view(OptionsFor(c));
  auto first = view.Poll({});  // learns every master
  // A replica just added shows in CLUSTER NODES once gossip carried its id and link: on a loaded
  // machine that may take a few polls (bounded).
  for (int i = 0; i < 100 && first.ok() &&
                  (first->replicas.size() != 1 || first->replicas[0].id.empty() ||
                   first->replicas[0].link_status != "up");
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    first = view.Poll({});
  }
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->masters.size(), 3u);
  ASSERT_EQ(first->replicas.size(), 1u);
  const ReplicaView& r = first->replicas[0];
  EXPECT_EQ(r.id, c.id(*replica));
  EXPECT_EQ(r.master_id, c.id(0));
  EXPECT_EQ(r.endpoint.port, c.port(*replica));
  EXPECT_TRUE(r.reachable);
  EXPECT_EQ(r.link_status, "up");
  EXPECT_TRUE(first->AllMastersHealthy());
  const std::string stopped_id = c.id(2);
  c.StopNode(2);

  auto snap = view.Poll({});
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->masters.size(), 3u);  // kept, with the error
  const MasterView* gone = snap->MasterById(stopped_id);
  ASSERT_NE(gone, nullptr);
  EXPECT_FALSE(gone->reachable);
  EXPECT_FALSE(gone->error.empty());
  EXPECT_EQ(gone->endpoint.port, c.port(2));
  std::string why;
  EXPECT_FALSE(snap->AllMastersHealthy(&why));
  EXPECT_THAT(why, HasSubstr("unreachable"));

  // A paused (unresponsive) master costs about one command timeout (1 s), then is unreachable:
  // the poll never hangs on it. The bound is loose: ASan builds on a loaded 2-core machine.
  ASSERT_TRUE(c.PauseNode(1).ok());
  const auto start = std::chrono::steady_clock::now();
  auto paused = view.Poll({});
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(c.ResumeNode(1).ok());
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_FALSE(paused->MasterById(c.id(1))->reachable);
  EXPECT_LT(took, std::chrono::seconds(8));

  // Only the stopped node as seed, but known masters from the last poll are tried first.
  ClusterView from_dead(OptionsFor(c, {c.endpoint(2)}));
  EXPECT_FALSE(from_dead.Poll({}).ok());
  auto recovered = view.Poll({});
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE(recovered->MasterById(c.id(1))->reachable);
}

}  // namespace
}  // namespace slotpilot::migration
