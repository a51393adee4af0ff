// Lease against a real 3-master cluster: mutual exclusion, fencing, expiry, journal, MOVED
// following, rendezvous hashing.
#include "migration/lease.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "protocol/slot.h"
#include "tests/support/redis_server.h"
#include "tests/support/test_cluster.h"

namespace slotpilot::migration {
namespace {

using slotpilot::testing::TestCluster;
using ::testing::ElementsAre;

// One client per endpoint, reconnected when broken (what ClusterView::Client does).
class Connector {
 public:
  absl::StatusOr<RedisClient*> operator()(const Endpoint& e) {
    const std::string key = e.host + ":" + std::to_string(e.port);
    auto it = clients_.find(key);
    if (it != clients_.end() && it->second->ok()) return it->second.get();
    absl::StatusOr<std::unique_ptr<RedisClient>> c = RedisClient::Connect(e.host, e.port);
    if (!c.ok()) return c.status();
    RedisClient* raw = c->get();
    clients_[key] = *std::move(c);
    return raw;
  }

 private:
  std::map<std::string, std::unique_ptr<RedisClient>> clients_;
};

class LeaseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cluster = TestCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  // A lease pointed at the master that owns the control slot.
  std::unique_ptr<Lease> MakeLease(std::string id,
                                   std::chrono::milliseconds ttl = std::chrono::seconds(30)) {
    LeaseOptions options;
    options.sidecar_id = std::move(id);
    options.ttl = ttl;
    auto connector = std::make_shared<Connector>();
    auto lease = std::make_unique<Lease>(
        options, [connector](const Endpoint& e) { return (*connector)(e); });
    auto owner = cluster_->OwnerOf(Lease::ControlSlot());
    EXPECT_TRUE(owner.ok() && *owner >= 0);
    lease->SetControlEndpoint(cluster_->endpoint(owner.ok() ? *owner : 0));
    return lease;
  }

  // A fresh slot per test, never the control slot.
  static uint16_t NextSlot() {
    static uint16_t next = 200;
    ++next;
    if (next == Lease::ControlSlot()) ++next;
    return next;
  }

  static TestCluster* cluster_;
};
TestCluster* LeaseTest::cluster_ = nullptr;

TEST_F(LeaseTest, ControlSlotIsTheHashTagsSlotAndCannotBeLeased) {
  EXPECT_EQ(Lease::ControlSlot(), protocol::KeyHashSlot("{mwatch}"));
  EXPECT_EQ(protocol::KeyHashSlot(Lease::LeaseKey(7)), Lease::ControlSlot());
  EXPECT_EQ(protocol::KeyHashSlot(Lease::JournalKey(7)), Lease::ControlSlot());
  EXPECT_EQ(protocol::KeyHashSlot(Lease::FenceKey(7)), Lease::ControlSlot());
  EXPECT_EQ(protocol::KeyHashSlot(Lease::SidecarsKey()), Lease::ControlSlot());
  auto lease = MakeLease("sc-a");
  EXPECT_EQ(lease->Acquire(Lease::ControlSlot()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeaseTest, ExactlyOneOfTwoSidecarsHoldsTheLease) {
  const uint16_t slot = NextSlot();
  auto a = MakeLease("sc-a");
  auto b = MakeLease("sc-b");
  auto got_a = a->Acquire(slot);
  ASSERT_TRUE(got_a.ok()) << got_a.status();
  EXPECT_TRUE(*got_a);
  auto got_b = b->Acquire(slot);
  ASSERT_TRUE(got_b.ok()) << got_b.status();
  EXPECT_FALSE(*got_b);
  EXPECT_FALSE(b->token(slot).has_value());

  auto holder = b->Holder(slot);
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value());
  EXPECT_EQ((*holder)->sidecar_id, "sc-a");
  EXPECT_EQ((*holder)->token, *a->token(slot));
  EXPECT_GT((*holder)->pttl_ms, 0);

  // A non-holder can neither renew, nor journal, nor release.
  EXPECT_EQ(b->Renew(slot).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b->WriteJournal(slot, Journal{}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(b->Release(slot).ok());
  holder = a->Holder(slot);
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->sidecar_id, "sc-a");
  EXPECT_TRUE(a->Renew(slot).ok());

  // Released by its holder, the other one gets it with a higher fencing token.
  const uint64_t token_a = *a->token(slot);
  EXPECT_TRUE(a->Release(slot).ok());
  holder = b->Holder(slot);
  ASSERT_TRUE(holder.ok());
  EXPECT_FALSE(holder->has_value());
  got_b = b->Acquire(slot);
  ASSERT_TRUE(got_b.ok() && *got_b);
  EXPECT_GT(*b->token(slot), token_a);
  EXPECT_TRUE(b->Release(slot).ok());
}

TEST_F(LeaseTest, ExpiryLetsTheOtherInAndTheFormerHolderCannotRenew) {
  const uint16_t slot = NextSlot();
  auto a = MakeLease("sc-a", std::chrono::milliseconds(300));
  auto b = MakeLease("sc-b");
  ASSERT_TRUE(*a->Acquire(slot));
  const uint64_t token_a = *a->token(slot);
  ASSERT_FALSE(*b->Acquire(slot));
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        auto got = b->Acquire(slot);
        return got.ok() && *got;
      },
      std::chrono::seconds(3)));
  EXPECT_GT(*b->token(slot), token_a);
  // The former holder's renew, journal and release all fail or do nothing; stop at once.
  EXPECT_EQ(a->Renew(slot).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(a->token(slot).has_value());
  EXPECT_EQ(a->WriteJournal(slot, Journal{}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(a->Release(slot).ok());
  auto holder = a->Holder(slot);
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->sidecar_id, "sc-b");
  EXPECT_TRUE(b->Release(slot).ok());
}

// A sidecar restarted with the same id (kill -9 mid-repair, a pod's stable name) takes over the
// lease its dead predecessor left at once, with a new token; the predecessor is fenced off.
// Another id (even one with our id as a prefix) still has to wait.
TEST_F(LeaseTest, ARestartedSidecarTakesOverTheLeaseItsOwnIdLeft) {
  const uint16_t slot = NextSlot();
  auto dead = MakeLease("sc-r");
  ASSERT_TRUE(*dead->Acquire(slot));
  const uint64_t token_dead = *dead->token(slot);
  auto prefixed = MakeLease("sc");
  EXPECT_FALSE(*prefixed->Acquire(slot));
  auto other = MakeLease("sc-r2");
  EXPECT_FALSE(*other->Acquire(slot));

  auto restarted = MakeLease("sc-r");
  auto got = restarted->Acquire(slot);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got);
  EXPECT_GT(*restarted->token(slot), token_dead);
  EXPECT_EQ(dead->Renew(slot).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(dead->WriteJournal(slot, Journal{}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(restarted->Renew(slot).ok());
  EXPECT_FALSE(*other->Acquire(slot));
  EXPECT_TRUE(restarted->Release(slot).ok());
}

TEST_F(LeaseTest, RacingSidecarsNeverShareASlot) {
  constexpr int kSidecars = 4;
  constexpr int kSlots = 40;
  std::vector<uint16_t> slots;
  for (int i = 0; i < kSlots; ++i) slots.push_back(NextSlot());
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < kSidecars; ++i) leases.push_back(MakeLease("race-" + std::to_string(i)));
  std::vector<std::vector<int>> won(kSidecars);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSidecars; ++i) {
    threads.emplace_back([&, i] {
      for (uint16_t slot : slots) {
        auto got = leases[i]->Acquire(slot);
        won[i].push_back(got.ok() && *got ? 1 : 0);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < kSlots; ++s) {
    int winners = 0;
    for (int i = 0; i < kSidecars; ++i) winners += won[i][s];
    EXPECT_EQ(winners, 1) << "slot " << slots[s];
  }
}

TEST_F(LeaseTest, JournalRoundTripIsFencedAndStamped) {
  const uint16_t slot = NextSlot();
  auto a = MakeLease("sc-a");
  ASSERT_TRUE(*a->Acquire(slot));
  Journal j;
  j.step = "move";
  j.action = "forward";
  j.source = cluster_->id(0);
  j.target = cluster_->id(1);
  j.attempts = 2;
  j.keys_before = 40;
  j.note = "IOERR error or timeout reading to target instance";
  ASSERT_TRUE(a->WriteJournal(slot, j).ok());
  auto b = MakeLease("sc-b");
  auto read = b->ReadJournal(slot);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_TRUE(read->has_value());
  const Journal& r = **read;
  EXPECT_EQ(r.token, *a->token(slot));
  EXPECT_EQ(r.holder, "sc-a");
  EXPECT_EQ(r.step, "move");
  EXPECT_EQ(r.action, "forward");
  EXPECT_EQ(r.source, cluster_->id(0));
  EXPECT_EQ(r.target, cluster_->id(1));
  EXPECT_EQ(r.attempts, 2);
  EXPECT_EQ(r.keys_before, 40);
  EXPECT_EQ(r.note, j.note);
  EXPECT_GT(r.updated_at_ms, 1700000000000);
  // The journal outlives the lease, for the successor.
  ASSERT_TRUE(a->Release(slot).ok());
  read = b->ReadJournal(slot);
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->step, "move");
  auto none = b->ReadJournal(NextSlot());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(LeaseTest, FollowsMovedWhenPointedAtTheWrongMaster) {
  const uint16_t slot = NextSlot();
  auto owner = cluster_->OwnerOf(Lease::ControlSlot());
  ASSERT_TRUE(owner.ok());
  auto lease = MakeLease("sc-a");
  const int wrong = (*owner + 1) % cluster_->size();
  lease->SetControlEndpoint(cluster_->endpoint(wrong));
  auto got = lease->Acquire(slot);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got);
  ASSERT_TRUE(lease->control_endpoint().has_value());
  EXPECT_EQ(lease->control_endpoint()->port, cluster_->port(*owner));
  EXPECT_TRUE(lease->Release(slot).ok());
}

TEST_F(LeaseTest, RendezvousPicksExactlyOneLiveSidecarPerSlot) {
  std::vector<std::unique_ptr<Lease>> leases;
  for (const char* id : {"rv-a", "rv-b", "rv-c"}) {
    leases.push_back(MakeLease(id));
    ASSERT_TRUE(leases.back()->Heartbeat().ok());
  }
  auto live = leases[0]->LiveSidecars();
  ASSERT_TRUE(live.ok()) << live.status();
  for (const char* id : {"rv-a", "rv-b", "rv-c"}) {
    EXPECT_NE(std::find(live->begin(), live->end(), id), live->end()) << id;
  }
  std::map<std::string, int> wins;
  for (uint16_t slot = 0; slot < 300; ++slot) {
    int preferred = 0;
    for (auto& lease : leases) {
      auto p = lease->IsPreferred(slot);
      ASSERT_TRUE(p.ok()) << p.status();
      if (*p) {
        ++preferred;
        ++wins[lease->options().sidecar_id];
      }
    }
    // Sidecars of other tests in this process may be live too: rv-* win at most once.
    EXPECT_LE(preferred, 1) << slot;
  }
  EXPECT_EQ(wins.size(), 3u);
  const std::vector<std::string> ids = {"x", "y", "z"};
  std::map<std::string, int> spread;
  for (uint16_t slot = 0; slot < 3000; ++slot) ++spread[Lease::RendezvousWinner(slot, ids)];
  for (const auto& id : ids) EXPECT_GT(spread[id], 800) << id;
  // Removing a sidecar only moves the slots it had.
  const std::vector<std::string> two = {"x", "z"};
  for (uint16_t slot = 0; slot < 3000; ++slot) {
    const std::string before = Lease::RendezvousWinner(slot, ids);
    if (before != "y") {
      EXPECT_EQ(Lease::RendezvousWinner(slot, two), before);
    }
  }
}

TEST_F(LeaseTest, OtherActorNamesTheHolderOrThePreferredSidecar) {
  auto a = MakeLease("oa-a");
  auto b = MakeLease("oa-b");
  ASSERT_TRUE(a->Heartbeat().ok());
  ASSERT_TRUE(b->Heartbeat().ok());
  // Find a slot that rendezvous gives to oa-b (among the live sidecars a sees).
  uint16_t slot = 0;
  for (uint16_t s = 3000; s < 3100; ++s) {
    auto p = a->IsPreferred(s);
    ASSERT_TRUE(p.ok());
    if (!*p) {
      auto live = a->LiveSidecars();
      ASSERT_TRUE(live.ok());
      if (Lease::RendezvousWinner(s, *live) == "oa-b") {
        slot = s;
        break;
      }
    }
  }
  ASSERT_NE(slot, 0);
  EXPECT_EQ(a->OtherActor(slot), "oa-b");
  EXPECT_EQ(a->OtherActor(slot, /*rendezvous=*/false), "");
  EXPECT_EQ(b->OtherActor(slot), "");
  // A lease beats rendezvous: whoever holds it is the actor.
  ASSERT_TRUE(*a->Acquire(slot));
  EXPECT_EQ(a->OtherActor(slot), "");
  EXPECT_EQ(b->OtherActor(slot), "oa-a");
  ASSERT_TRUE(a->Release(slot).ok());
}

TEST_F(LeaseTest, UpdateViewFindsTheControlMaster) {
  ClusterSnapshot snapshot;
  for (int i = 0; i < cluster_->size(); ++i) {
    MasterView m;
    m.endpoint = cluster_->endpoint(i);
    m.id = cluster_->id(i);
    m.reachable = true;
    protocol::ClusterNode self;
    self.id = m.id;
    m.nodes.push_back(self);
    m.owner_index.fill(-1);
    const auto range = cluster_->InitialRange(i);
    for (int s = range.first; s <= range.last; ++s) m.owner_index[s] = 0;
    snapshot.masters.push_back(m);
  }
  auto lease = MakeLease("sc-a");
  ASSERT_TRUE(lease->UpdateView(snapshot).ok());
  auto owner = cluster_->OwnerOf(Lease::ControlSlot());
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(lease->control_endpoint()->port, cluster_->port(*owner));
}

// The lease master with a replica: Acquire waits (WAIT 1 100) for the lease to reach it.
TEST(LeaseReplicaTest, AcquireWaitsForAReplicaWhenTheControlMasterHasOne) {
  auto cluster = TestCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  TestCluster& c = **cluster;
  auto owner = c.OwnerOf(Lease::ControlSlot());
  ASSERT_TRUE(owner.ok() && *owner >= 0);
  slotpilot::testing::RedisServerOptions ro;
  ro.cluster_enabled = true;
  auto replica = slotpilot::testing::RedisServer::Start(ro);
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto rc = (*replica)->Connect();
  ASSERT_TRUE(rc.ok());
  ASSERT_TRUE((*rc)->Command({"CLUSTER", "MEET", "127.0.0.1", std::to_string(c.port(0))}).ok());
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        auto r = (*rc)->Command({"CLUSTER", "REPLICATE", c.id(*owner)});
        return r.ok() && !r->is_error();
      },
      std::chrono::seconds(10)));
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        auto info = c.Command(*owner, {"INFO", "replication"});
        return info.ok() && info->str.find("state=online") != std::string::npos;
      },
      std::chrono::seconds(15)));
  Connector connector;
  LeaseOptions options;
  options.sidecar_id = "sc-a";
  Lease lease(options, [&connector](const Endpoint& e) { return connector(e); });
  lease.SetControlEndpoint(c.endpoint(*owner));
  auto got = lease.Acquire(777);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got);
  auto stats = c.Command(*owner, {"INFO", "commandstats"});
  ASSERT_TRUE(stats.ok());
  EXPECT_THAT(stats->str, ::testing::HasSubstr("cmdstat_wait:calls=1,"));
  // The replica has the lease (its own cluster state turns ok a moment after it joined).
  const std::string want = "sc-a:" + std::to_string(*lease.token(777));
  std::string seen;
  EXPECT_TRUE(TestCluster::WaitUntil(
      [&] {
        auto rr = (*rc)->Pipeline({{"READONLY"}, {"GET", Lease::LeaseKey(777)}});
        seen = rr.ok() ? (*rr)[1].str : std::string(rr.status().message());
        return seen == want;
      },
      std::chrono::seconds(10)))
      << seen;
}

}  // namespace
}  // namespace slotpilot::migration
