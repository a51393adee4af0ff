// AssessSlot (the C.2 classifier) over hand-built snapshots for every row of the table and some
// ambiguous states, then over live states built with the test cluster; StuckDetector with a fake
// clock.
#include "migration/stuck_detector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "protocol/strings.h"
#include "tests/support/test_cluster.h"

namespace slotpilot::migration {
namespace {

using ::slotpilot::testing::TestCluster;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

// --- Hand-built snapshots ------------------------------------------------------------------------

// Masters 0..n-1 ("A", "B", "C") at 127.0.0.1:7001.., slots split evenly, every view agreeing,
// all reachable and healthy. Counted slots get 0 keys on every master unless set.
class SnapshotBuilder {
 public:
  explicit SnapshotBuilder(int n = 3) {
    for (int i = 0; i < n; ++i) {
      MasterView m;
      m.id = Id(i);
      m.endpoint = Endpoint{"127.0.0.1", static_cast<uint16_t>(7001 + i)};
      m.reachable = true;
      m.config_epoch = static_cast<uint64_t>(i + 1);
      m.poll_duration = absl::Milliseconds(1);
      snap_.masters.push_back(std::move(m));
    }
    for (int v = 0; v < n; ++v) {
      for (int i = 0; i < n; ++i) {
        protocol::ClusterNode node;
        node.id = Id(i);
        node.host = "127.0.0.1";
        node.port = static_cast<uint16_t>(7001 + i);
        node.flags = protocol::kFlagMaster | (i == v ? uint32_t{protocol::kFlagMyself} : 0u);
        snap_.masters[v].nodes.push_back(node);
      }
      for (int s = 0; s < protocol::kSlotCount; ++s) {
        snap_.masters[v].owner_index[s] = static_cast<int16_t>(s * n / protocol::kSlotCount);
      }
    }
    snap_.taken_at = absl::Now();
  }
  static std::string Id(int i) { return std::string(40, static_cast<char>('a' + i)); }

  SnapshotBuilder& Owner(int view, uint16_t slot, int owner) {
    snap_.masters[view].owner_index[slot] = static_cast<int16_t>(owner);
    return *this;
  }
  SnapshotBuilder& OwnerEverywhere(uint16_t slot, int owner) {
    for (size_t v = 0; v < snap_.masters.size(); ++v) Owner(static_cast<int>(v), slot, owner);
    return *this;
  }
  SnapshotBuilder& Migrating(int node, uint16_t slot, int dst) {
    snap_.masters[node].migrating.push_back({slot, Id(dst)});
    return Count(slot);
  }
  SnapshotBuilder& Importing(int node, uint16_t slot, int src) {
    snap_.masters[node].importing.push_back({slot, Id(src)});
    return Count(slot);
  }
  SnapshotBuilder& Keys(int node, uint16_t slot, int64_t n) {
    Count(slot);
    snap_.masters[node].keys[slot] = n;
    return *this;
  }
  SnapshotBuilder& Uncounted(int node, uint16_t slot) {
    snap_.masters[node].keys.erase(slot);
    uncounted_.insert({node, slot});
    return *this;
  }
  SnapshotBuilder& Count(uint16_t slot) {
    snap_.counted_slots.insert(slot);
    return *this;
  }
  SnapshotBuilder& Unreachable(int node) {
    MasterView& m = snap_.masters[node];
    m.reachable = false;
    m.error = "connection refused";
    m.nodes.clear();
    m.owner_index = MasterView::UnassignedOwners();
    m.migrating.clear();
    m.importing.clear();
    m.keys.clear();
    return *this;
  }
  SnapshotBuilder& FlaggedByOthers(int node, uint32_t flags) {
    snap_.masters[node].flags_seen_by_others |= flags;
    return *this;
  }
  SnapshotBuilder& PollDuration(int node, absl::Duration d) {
    snap_.masters[node].poll_duration = d;
    return *this;
  }
  ClusterSnapshot Build() const {
    ClusterSnapshot s = snap_;
    for (uint16_t slot : s.counted_slots) {
      for (size_t i = 0; i < s.masters.size(); ++i) {
        if (s.masters[i].reachable && !uncounted_.count({static_cast<int>(i), slot})) {
          s.masters[i].keys.emplace(slot, 0);
        }
      }
    }
    return s;
  }

 private:
  ClusterSnapshot snap_;
  std::set<std::pair<int, uint16_t>> uncounted_;
};

const std::string kA = SnapshotBuilder::Id(0);
const std::string kB = SnapshotBuilder::Id(1);
const std::string kC = SnapshotBuilder::Id(2);
constexpr uint16_t kSlot = 100;  // owned by A (0) in the builder

std::vector<std::string> Texts(const std::vector<PlanStep>& steps) {
  std::vector<std::string> out;
  for (const PlanStep& s : steps) out.push_back(s.text);
  return out;
}

TEST(AssessSlot, StableSlot) {
  auto a = AssessSlot(SnapshotBuilder().Keys(0, kSlot, 5).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kStable) << a.reason;
  EXPECT_EQ(a.action, PlanKind::kNone);
  EXPECT_THAT(a.plan, IsEmpty());
  EXPECT_TRUE(a.complete);
  // Not counted at all: still stable (nothing suggests otherwise).
  EXPECT_EQ(AssessSlot(SnapshotBuilder().Build(), 5).signature, Signature::kStable);
}

TEST(AssessSlot, InterruptedReshardGoesForwardByIntent) {
  auto snap = SnapshotBuilder()
                  .Migrating(0, kSlot, 1)
                  .Importing(1, kSlot, 0)
                  .Keys(0, kSlot, 5)
                  .Keys(1, kSlot, 15)  // more keys on the target: redis-cli would still guess
                  .Build();
  auto a = AssessSlot(snap, kSlot);
  EXPECT_EQ(a.signature, Signature::kInterruptedReshard) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S3");
  EXPECT_EQ(a.action, PlanKind::kForward);
  EXPECT_EQ(a.source.id, kA);
  EXPECT_EQ(a.target.id, kB);
  EXPECT_EQ(a.intended_owner.id, kB);
  EXPECT_EQ(a.keys_source, 5);
  EXPECT_EQ(a.keys_target, 15);
  EXPECT_THAT(a.keys_elsewhere, IsEmpty());
  EXPECT_EQ(a.source_epoch, 1u);
  EXPECT_EQ(a.target_epoch, 2u);
  EXPECT_THAT(Texts(a.plan),
              ::testing::ElementsAre(
                  "CLUSTER SETSLOT 100 IMPORTING " + kA + " on 127.0.0.1:7002",
                  "CLUSTER SETSLOT 100 MIGRATING " + kB + " on 127.0.0.1:7001",
                  StartsWith("move the 5 keys of slot 100 from 127.0.0.1:7001 to 127.0.0.1:7002"),
                  "check CLUSTER COUNTKEYSINSLOT 100 = 0 on every master but 127.0.0.1:7002",
                  "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7002",
                  "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7001",
                  "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7003",
                  StartsWith("verify every master's view says 127.0.0.1:7002 owns slot 100")));
  EXPECT_EQ(a.plan[2].op, PlanStep::Op::kMoveKeys);
  EXPECT_EQ(a.plan[2].on.id, kA);
  EXPECT_EQ(a.plan[2].peer.id, kB);
  // Rollback: close A first, move B's keys home, close B.
  ASSERT_EQ(a.rollback.size(), 6u);
  EXPECT_EQ(a.rollback[0].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7001");
  EXPECT_EQ(a.rollback[2].op, PlanStep::Op::kMoveKeys);
  EXPECT_EQ(a.rollback[2].on.id, kB);
  EXPECT_EQ(a.rollback[4].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7002");
  EXPECT_THAT(a.PlanText(), StartsWith("1) CLUSTER SETSLOT 100 IMPORTING"));
  EXPECT_THAT(a.RollbackText(), StartsWith("1) CLUSTER SETSLOT 100 STABLE"));
}

TEST(AssessSlot, InterruptedReshardWithEverythingMovedStillForwards) {
  auto a = AssessSlot(
      SnapshotBuilder().Migrating(0, kSlot, 1).Importing(1, kSlot, 0).Keys(1, kSlot, 20).Build(),
      kSlot);
  EXPECT_EQ(a.signature, Signature::kInterruptedReshard) << a.reason;
  EXPECT_EQ(a.keys_source, 0);
}

TEST(AssessSlot, HalfOpenSourceCloses) {
  auto a = AssessSlot(SnapshotBuilder().Migrating(0, kSlot, 1).Keys(0, kSlot, 9).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kHalfOpenSource) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S1");
  EXPECT_EQ(a.action, PlanKind::kClose);
  EXPECT_EQ(a.intended_owner.id, kA);
  ASSERT_EQ(a.plan.size(), 2u);
  EXPECT_EQ(a.plan[0].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7001");
  EXPECT_THAT(a.rollback, IsEmpty());
}

TEST(AssessSlot, HalfClosedTargetReopensThenForwards) {
  auto a = AssessSlot(
      SnapshotBuilder().Migrating(0, kSlot, 1).Keys(0, kSlot, 3).Keys(1, kSlot, 4).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kHalfClosedTarget) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S1b");
  EXPECT_EQ(a.action, PlanKind::kImportThenForward);
  EXPECT_EQ(a.intended_owner.id, kB);
  ASSERT_FALSE(a.plan.empty());
  EXPECT_EQ(a.plan[0].text, "CLUSTER SETSLOT 100 IMPORTING " + kA + " on 127.0.0.1:7002");
  EXPECT_FALSE(a.rollback.empty());
}

TEST(AssessSlot, HalfOpenTargetCloses) {
  auto a = AssessSlot(SnapshotBuilder().Importing(1, kSlot, 0).Keys(0, kSlot, 2).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kHalfOpenTarget) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S2");
  EXPECT_EQ(a.action, PlanKind::kClose);
  EXPECT_EQ(a.source.id, kA);
  EXPECT_EQ(a.target.id, kB);
  EXPECT_EQ(a.intended_owner.id, kA);
  ASSERT_EQ(a.plan.size(), 2u);
  EXPECT_EQ(a.plan[0].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7002");
}

TEST(AssessSlot, StrayWritesOnTargetDrainBack) {
  auto a = AssessSlot(
      SnapshotBuilder().Importing(1, kSlot, 0).Keys(0, kSlot, 2).Keys(1, kSlot, 3).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kStrayWritesOnTarget) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S2b");
  EXPECT_EQ(a.action, PlanKind::kDrainThenStable);
  EXPECT_EQ(a.intended_owner.id, kA);
  ASSERT_EQ(a.plan.size(), 5u);
  EXPECT_EQ(a.plan[1].op, PlanStep::Op::kMoveKeys);
  EXPECT_EQ(a.plan[1].on.id, kB);
  EXPECT_EQ(a.plan[1].peer.id, kA);
  EXPECT_EQ(a.plan[3].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7002");
}

TEST(AssessSlot, UnclaimedAfterPartialFinishCommitsToTarget) {
  auto a = AssessSlot(SnapshotBuilder()
                          .Importing(1, kSlot, 0)
                          .Owner(0, kSlot, 1)  // A gave it to B
                          .Keys(1, kSlot, 10)
                          .Build(),
                      kSlot);
  EXPECT_EQ(a.signature, Signature::kUnclaimedAfterPartialFinish) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S4a");
  EXPECT_EQ(a.action, PlanKind::kCommit);
  EXPECT_EQ(a.intended_owner.id, kB);
  EXPECT_THAT(Texts(a.plan),
              ::testing::ElementsAre(StartsWith("check CLUSTER COUNTKEYSINSLOT 100 = 0"),
                                     "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7002",
                                     "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7001",
                                     "CLUSTER SETSLOT 100 NODE " + kB + " on 127.0.0.1:7003",
                                     StartsWith("verify")));
  // Keys left on A: committing would delete them (S4b). Alert.
  auto with_keys = AssessSlot(SnapshotBuilder()
                                  .Importing(1, kSlot, 0)
                                  .Owner(0, kSlot, 1)
                                  .Keys(0, kSlot, 2)
                                  .Keys(1, kSlot, 10)
                                  .Build(),
                              kSlot);
  EXPECT_EQ(with_keys.signature, Signature::kUnknown);
  EXPECT_EQ(with_keys.action, PlanKind::kAlert);
}

TEST(AssessSlot, GossipSettlingWaitsThenAlerts) {
  auto snap = SnapshotBuilder().Owner(2, kSlot, 1).Keys(0, kSlot, 4).Build();  // C says B
  AssessOptions o;
  o.disputed_for = absl::Seconds(2);
  auto a = AssessSlot(snap, kSlot, o);
  EXPECT_EQ(a.signature, Signature::kGossipSettling) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S4c");
  EXPECT_EQ(a.action, PlanKind::kWait);
  ASSERT_EQ(a.plan.size(), 1u);
  EXPECT_EQ(a.plan[0].op, PlanStep::Op::kWait);
  o.disputed_for = absl::Seconds(6);
  EXPECT_EQ(AssessSlot(snap, kSlot, o).signature, Signature::kUnknown);
}

TEST(AssessSlot, UnassignedGoesToTheKeyHolder) {
  auto a =
      AssessSlot(SnapshotBuilder().OwnerEverywhere(kSlot, -1).Keys(1, kSlot, 7).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kUnassigned) << a.reason;
  EXPECT_EQ(ScenarioTag(a.signature), "S8");
  EXPECT_EQ(a.action, PlanKind::kAssign);
  EXPECT_EQ(a.target.id, kB);
  EXPECT_EQ(a.keys_target, 7);
  ASSERT_EQ(a.plan.size(), 3u);
  EXPECT_EQ(a.plan[1].text,
            "MULTI; CLUSTER ADDSLOTS 100; CLUSTER BUMPEPOCH; EXEC on 127.0.0.1:7002");
}

TEST(AssessSlot, UnassignedWithoutKeysNeedsThePreviousOwner) {
  auto snap = SnapshotBuilder().OwnerEverywhere(kSlot, -1).Count(kSlot).Build();
  auto none = AssessSlot(snap, kSlot);
  EXPECT_EQ(none.signature, Signature::kUnknown) << none.reason;  // never a random node
  EXPECT_THAT(none.reason, HasSubstr("random"));
  AssessOptions by_id;
  by_id.previous_owner = kC;
  auto a = AssessSlot(snap, kSlot, by_id);
  EXPECT_EQ(a.signature, Signature::kUnassigned);
  EXPECT_EQ(a.target.id, kC);
  AssessOptions by_address;
  by_address.previous_owner = "127.0.0.1:7001";
  EXPECT_EQ(AssessSlot(snap, kSlot, by_address).target.id, kA);
  // Keys on two masters: no authoritative copy.
  auto two = AssessSlot(
      SnapshotBuilder().OwnerEverywhere(kSlot, -1).Keys(0, kSlot, 1).Keys(1, kSlot, 1).Build(),
      kSlot);
  EXPECT_EQ(two.signature, Signature::kUnknown);
}

TEST(AssessSlot, UnassignedOnlyInTheOwnersViewGoesBackToIt) {
  // DELSLOTS on the owner only: A's view is empty, B and C still name A.
  auto a = AssessSlot(SnapshotBuilder().Owner(0, kSlot, -1).Count(kSlot).Build(), kSlot);
  EXPECT_EQ(a.signature, Signature::kUnassigned) << a.reason;
  EXPECT_EQ(a.target.id, kA);
  // Keys on B, but B's view names A: ADDSLOTS on B would fail. Alert.
  auto b = AssessSlot(SnapshotBuilder().Owner(0, kSlot, -1).Keys(1, kSlot, 3).Build(), kSlot);
  EXPECT_EQ(b.signature, Signature::kUnknown) << b.reason;
}

TEST(AssessSlot, StaleMigratingMarkerAfterAFinishCloses) {
  auto a = AssessSlot(
      SnapshotBuilder().Migrating(0, kSlot, 1).OwnerEverywhere(kSlot, 1).Keys(1, kSlot, 8).Build(),
      kSlot);
  EXPECT_EQ(a.signature, Signature::kStaleMigratingMarker) << a.reason;
  EXPECT_EQ(a.action, PlanKind::kClose);
  EXPECT_EQ(a.intended_owner.id, kB);
  EXPECT_EQ(a.plan[0].text, "CLUSTER SETSLOT 100 STABLE on 127.0.0.1:7001");
}

TEST(AssessSlot, TargetClaimInFlightWaitsUnlessTheSourceHasKeys) {
  // B ran SETSLOT NODE B (epoch bump); A, still MIGRATING, has not heard it yet.
  auto builder = SnapshotBuilder().Migrating(0, kSlot, 1).Owner(1, kSlot, 1).Keys(1, kSlot, 8);
  AssessOptions o;
  o.disputed_for = absl::Seconds(1);
  EXPECT_EQ(AssessSlot(builder.Build(), kSlot, o).signature, Signature::kGossipSettling);
  auto s4b = AssessSlot(builder.Keys(0, kSlot, 2).Build(), kSlot, o);
  EXPECT_EQ(s4b.signature, Signature::kUnknown);
  EXPECT_THAT(s4b.reason, HasSubstr("S4b"));
}

TEST(AssessSlot, AmbiguousStatesAreUnknown) {
  // Two migrating nodes.
  auto two_mig =
      AssessSlot(SnapshotBuilder().Migrating(0, kSlot, 1).Migrating(2, kSlot, 1).Build(), kSlot);
  EXPECT_EQ(two_mig.signature, Signature::kUnknown);
  EXPECT_EQ(two_mig.action, PlanKind::kAlert);
  ASSERT_EQ(two_mig.plan.size(), 1u);
  EXPECT_EQ(two_mig.plan[0].op, PlanStep::Op::kAlert);
  // Two importing nodes.
  EXPECT_EQ(
      AssessSlot(SnapshotBuilder().Importing(1, kSlot, 0).Importing(2, kSlot, 0).Build(), kSlot)
          .signature,
      Signature::kUnknown);
  // Markers that do not pair: A migrating to B, C importing from A.
  EXPECT_EQ(
      AssessSlot(SnapshotBuilder().Migrating(0, kSlot, 1).Importing(2, kSlot, 0).Build(), kSlot)
          .signature,
      Signature::kUnknown);
  // Keys on three nodes during a reshard.
  EXPECT_EQ(AssessSlot(SnapshotBuilder()
                           .Migrating(0, kSlot, 1)
                           .Importing(1, kSlot, 0)
                           .Keys(0, kSlot, 1)
                           .Keys(1, kSlot, 1)
                           .Keys(2, kSlot, 1)
                           .Build(),
                       kSlot)
                .signature,
            Signature::kUnknown);
  // A reshard where a third view names another owner.
  EXPECT_EQ(AssessSlot(SnapshotBuilder()
                           .Migrating(0, kSlot, 1)
                           .Importing(1, kSlot, 0)
                           .Owner(2, kSlot, 2)
                           .Build(),
                       kSlot)
                .signature,
            Signature::kUnknown);
  // Stable views, keys on a non-owner (a failover mid-migration).
  EXPECT_EQ(
      AssessSlot(SnapshotBuilder().Keys(0, kSlot, 1).Keys(2, kSlot, 1).Build(), kSlot).signature,
      Signature::kUnknown);
  // Half-open source whose target count is missing: cannot tell S1 from S1b.
  EXPECT_EQ(AssessSlot(SnapshotBuilder().Migrating(0, kSlot, 1).Uncounted(1, kSlot).Build(), kSlot)
                .signature,
            Signature::kUnknown);
}

TEST(AssessSlot, UnreachableThirdMasterMarksTheViewIncomplete) {
  auto a = AssessSlot(SnapshotBuilder()
                          .Migrating(0, kSlot, 1)
                          .Importing(1, kSlot, 0)
                          .Keys(0, kSlot, 3)
                          .Unreachable(2)
                          .Build(),
                      kSlot);
  EXPECT_EQ(a.signature, Signature::kInterruptedReshard) << a.reason;
  EXPECT_FALSE(a.complete);
  EXPECT_THAT(a.reason, HasSubstr("incomplete"));
  // The owner itself is down: its slot is not "unassigned" just because nobody reachable claims it.
  auto down = AssessSlot(SnapshotBuilder().Unreachable(0).Count(kSlot).Build(), kSlot);
  EXPECT_EQ(down.signature, Signature::kUnknown) << down.reason;
  EXPECT_THAT(down.reason, HasSubstr("did not answer"));
}

// --- StuckDetector with a fake clock
// ----------------------------------------------------------------

class StuckDetectorTest : public ::testing::Test {
 protected:
  StuckDetectorOptions Options() {
    StuckDetectorOptions o;
    o.stall_timeout = absl::Seconds(60);
    o.progress_hold = absl::Seconds(15);
    o.healthy_again_hold = absl::Seconds(30);
    o.self_id = "me";
    o.clock = [this] { return now_; };
    o.lease_holder = [this](uint16_t) { return lease_; };
    return o;
  }
  static ClusterSnapshot Reshard(int64_t keys_a, int64_t keys_b) {
    return SnapshotBuilder()
        .Migrating(0, kSlot, 1)
        .Importing(1, kSlot, 0)
        .Keys(0, kSlot, keys_a)
        .Keys(1, kSlot, keys_b)
        .Build();
  }
  static const SlotVerdict* Find(const std::vector<SlotVerdict>& v, uint16_t slot) {
    for (const SlotVerdict& x : v) {
      if (x.slot == slot) return &x;
    }
    return nullptr;
  }
  SlotVerdict At(StuckDetector& d, absl::Duration t, const ClusterSnapshot& snap) {
    now_ = start_ + t;
    auto verdicts = d.Update(snap);
    const SlotVerdict* v = Find(verdicts, kSlot);
    EXPECT_NE(v, nullptr);
    return v == nullptr ? SlotVerdict{} : *v;
  }

  absl::Time start_ = absl::FromUnixSeconds(1700000000);
  absl::Time now_ = start_;
  std::string lease_;
};

TEST_F(StuckDetectorTest, HealthyClusterReportsNothing) {
  StuckDetector d(Options());
  EXPECT_THAT(d.Update(SnapshotBuilder().Build()), IsEmpty());
}

TEST_F(StuckDetectorTest, UnchangedStateBecomesStuckAfterTheStallTimeout) {
  StuckDetector d(Options());
  auto v = At(d, absl::ZeroDuration(), Reshard(10, 5));
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_EQ(v.assessment.signature, Signature::kInterruptedReshard);
  EXPECT_EQ(v.since, start_);
  v = At(d, absl::Seconds(59), Reshard(10, 5));
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_THAT(v.why_not_stuck, HasSubstr("stall timeout"));
  v = At(d, absl::Seconds(60), Reshard(10, 5));
  EXPECT_EQ(v.verdict, Verdict::kStuck);
  EXPECT_DOUBLE_EQ(v.stuck_seconds, 60);
  EXPECT_EQ(v.why_not_stuck, "");
}

TEST_F(StuckDetectorTest, ProgressResetsTheTimer) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  EXPECT_EQ(At(d, absl::Seconds(50), Reshard(9, 6)).verdict, Verdict::kProgressing);
  EXPECT_EQ(At(d, absl::Seconds(60), Reshard(9, 6)).verdict, Verdict::kProgressing);
  auto v = At(d, absl::Seconds(100), Reshard(9, 6));
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_EQ(v.last_progress, start_ + absl::Seconds(50));
  EXPECT_EQ(At(d, absl::Seconds(109), Reshard(9, 6)).verdict, Verdict::kObserving);
  EXPECT_EQ(At(d, absl::Seconds(110), Reshard(9, 6)).verdict, Verdict::kStuck);
  // One count moving alone is client traffic, not progress: new keys reaching the target by
  // ASK, keys expiring or deleted on the source, writes to both sides.
  EXPECT_EQ(At(d, absl::Seconds(200), Reshard(9, 7)).verdict, Verdict::kStuck);
  EXPECT_EQ(At(d, absl::Seconds(300), Reshard(8, 7)).verdict, Verdict::kStuck);
  EXPECT_EQ(At(d, absl::Seconds(400), Reshard(12, 9)).verdict, Verdict::kStuck);
}

// A slot that keeps getting new keys (each goes to the target by ASK) is still stuck: only a
// MIGRATE served by the source, or keys leaving it and reaching the target together, is progress.
TEST_F(StuckDetectorTest, NewKeysOnTheTargetAloneAreTrafficButMigrateCallsAreProgress) {
  StuckDetector d(Options());
  auto with_calls = [](int64_t a, int64_t b, int64_t calls) {
    ClusterSnapshot s = Reshard(a, b);
    s.masters[0].migrate_calls = calls;
    return s;
  };
  At(d, absl::ZeroDuration(), with_calls(10, 5, 7));
  for (int t = 10; t < 60; t += 10) {
    EXPECT_EQ(At(d, absl::Seconds(t), with_calls(10, 5 + t, 7)).verdict, Verdict::kObserving);
  }
  EXPECT_EQ(At(d, absl::Seconds(60), with_calls(10, 70, 7)).verdict, Verdict::kStuck);
  // Someone runs MIGRATE on the source (e.g. moving a key that already exists on the target
  // with REPLACE, so the target count stays): progress.
  EXPECT_EQ(At(d, absl::Seconds(70), with_calls(9, 70, 8)).verdict, Verdict::kProgressing);
  // Unknown counters (an unreachable node) are never progress by themselves.
  EXPECT_EQ(At(d, absl::Seconds(80), with_calls(9, 70, -1)).verdict, Verdict::kProgressing);
  EXPECT_EQ(At(d, absl::Seconds(130), with_calls(9, 70, 8)).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, EpochChangeIsProgress) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  ClusterSnapshot bumped = Reshard(10, 5);
  bumped.masters[1].config_epoch = 9;
  EXPECT_EQ(At(d, absl::Seconds(59), bumped).verdict, Verdict::kProgressing);
  EXPECT_EQ(At(d, absl::Seconds(75), bumped).verdict, Verdict::kObserving);
  EXPECT_EQ(At(d, absl::Seconds(119), bumped).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, SignatureChangeResetsTheTimer) {
  StuckDetector d(Options());
  auto half = SnapshotBuilder().Importing(1, kSlot, 0).Keys(0, kSlot, 10).Build();  // S2
  EXPECT_EQ(At(d, absl::ZeroDuration(), half).assessment.signature, Signature::kHalfOpenTarget);
  auto v = At(d, absl::Seconds(50), Reshard(10, 0));  // then MIGRATING on A: S3
  EXPECT_EQ(v.verdict, Verdict::kProgressing);
  EXPECT_EQ(v.signature_since, start_ + absl::Seconds(50));
  EXPECT_EQ(v.since, start_);
  EXPECT_EQ(At(d, absl::Seconds(109), Reshard(10, 0)).verdict, Verdict::kObserving);
  EXPECT_EQ(At(d, absl::Seconds(110), Reshard(10, 0)).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, UnhealthyMasterBlocksTheVerdict) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  ClusterSnapshot pfail = Reshard(10, 5);
  pfail.masters[2].flags_seen_by_others = protocol::kFlagPfail;
  auto v = At(d, absl::Seconds(61), pfail);
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_THAT(v.why_not_stuck, HasSubstr("fail?"));
  auto unreachable = SnapshotBuilder()
                         .Migrating(0, kSlot, 1)
                         .Importing(1, kSlot, 0)
                         .Keys(0, kSlot, 10)
                         .Keys(1, kSlot, 5)
                         .Unreachable(2)
                         .Build();
  v = At(d, absl::Seconds(62), unreachable);
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_THAT(v.why_not_stuck, HasSubstr("unreachable"));
  EXPECT_EQ(At(d, absl::Seconds(63), Reshard(10, 5)).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, ForeignLeaseBlocksTheVerdict) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  lease_ = "sidecar-7:42";
  auto v = At(d, absl::Seconds(61), Reshard(10, 5));
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_EQ(v.lease_holder, "sidecar-7:42");
  EXPECT_THAT(v.why_not_stuck, HasSubstr("lease held by sidecar-7:42"));
  lease_ = "me:43";  // our own lease does not block
  EXPECT_EQ(At(d, absl::Seconds(62), Reshard(10, 5)).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, SlowSourceBlocksKeyMovingPlans) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  ClusterSnapshot slow = Reshard(10, 5);
  slow.masters[0].poll_duration = absl::Seconds(3);
  auto v = At(d, absl::Seconds(61), slow);
  EXPECT_EQ(v.verdict, Verdict::kObserving);
  EXPECT_THAT(v.why_not_stuck, HasSubstr("MIGRATE"));
  // A CLOSE plan does not depend on the source's responsiveness.
  StuckDetector d2(Options());
  auto s1 =
      SnapshotBuilder().Migrating(0, kSlot, 1).Keys(0, kSlot, 3).PollDuration(0, absl::Seconds(3));
  At(d2, absl::ZeroDuration(), s1.Build());
  EXPECT_EQ(At(d2, absl::Seconds(61), s1.Build()).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, HealthyAgainIsReportedForAWhile) {
  StuckDetector d(Options());
  At(d, absl::ZeroDuration(), Reshard(10, 5));
  auto v = At(d, absl::Seconds(10),
              SnapshotBuilder().OwnerEverywhere(kSlot, 1).Keys(1, kSlot, 15).Build());
  EXPECT_EQ(v.verdict, Verdict::kHealthyAgain);
  EXPECT_EQ(v.since, start_ + absl::Seconds(10));
  now_ = start_ + absl::Seconds(41);
  EXPECT_EQ(Find(d.Update(SnapshotBuilder().OwnerEverywhere(kSlot, 1).Build()), kSlot), nullptr);
}

TEST_F(StuckDetectorTest, LoopEvidenceIsReportedButIsNoVerdict) {
  StuckDetector d(Options());
  d.OnLoopEvidence(kSlot);
  auto v = At(d, absl::ZeroDuration(), SnapshotBuilder().Build());
  EXPECT_EQ(v.verdict, Verdict::kHealthy);
  EXPECT_EQ(v.last_loop_report, start_);
  // On an open slot it does not shorten the stall timeout.
  d.OnLoopEvidence(kSlot);
  EXPECT_EQ(At(d, absl::Seconds(1), Reshard(10, 5)).verdict, Verdict::kObserving);
  d.OnLoopEvidence(kSlot);
  EXPECT_EQ(At(d, absl::Seconds(30), Reshard(10, 5)).verdict, Verdict::kObserving);
}

TEST_F(StuckDetectorTest, GossipSettlingWaitsThenBecomesUnknown) {
  StuckDetector d(Options());
  auto disputed = SnapshotBuilder().Owner(2, kSlot, 1).Keys(0, kSlot, 4).Build();
  auto v = At(d, absl::ZeroDuration(), disputed);
  EXPECT_EQ(v.verdict, Verdict::kWaiting);
  v = At(d, absl::Seconds(4), disputed);
  EXPECT_EQ(v.verdict, Verdict::kWaiting);
  v = At(d, absl::Seconds(6), disputed);
  EXPECT_EQ(v.assessment.signature, Signature::kUnknown);
  EXPECT_EQ(v.verdict, Verdict::kProgressing);  // the signature changed
  EXPECT_EQ(At(d, absl::Seconds(66), disputed).verdict, Verdict::kStuck);
}

TEST_F(StuckDetectorTest, RemembersThePreviousOwnerForAnUnassignedSlot) {
  StuckDetector d(Options());
  EXPECT_THAT(d.Update(SnapshotBuilder().Build()), IsEmpty());  // A owns slot 100
  auto v =
      At(d, absl::Seconds(5), SnapshotBuilder().OwnerEverywhere(kSlot, -1).Count(kSlot).Build());
  EXPECT_EQ(v.assessment.signature, Signature::kUnassigned) << v.assessment.reason;
  EXPECT_EQ(v.assessment.target.id, kA);
  // An explicit hint wins over the memory.
  StuckDetectorOptions o = Options();
  o.previous_owner = [](uint16_t) { return std::string("127.0.0.1:7003"); };
  StuckDetector hinted(o);
  hinted.Update(SnapshotBuilder().Build());
  v = At(hinted, absl::Seconds(5),
         SnapshotBuilder().OwnerEverywhere(kSlot, -1).Count(kSlot).Build());
  EXPECT_EQ(v.assessment.target.id, kC);
}

// --- Live states, built with the test cluster (MIGRATION.md A.4 for S4a and S8) -----------------

class AssessLive : public ::testing::Test {
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

  SlotAssessment Assess(uint16_t slot, const AssessOptions& o = {}) {
    ClusterViewOptions vo;
    vo.seeds = c().Seeds();
    ClusterView view(vo);
    auto snap = view.Poll({slot});
    EXPECT_TRUE(snap.ok()) << snap.status();
    if (!snap.ok()) return {};
    return AssessSlot(*snap, slot, o);
  }
  std::string SetSlotOn(uint16_t slot, std::string_view what, int on) {
    return StrCat("CLUSTER SETSLOT ", slot, " ", what, " on ", c().address(on));
  }

  static TestCluster* cluster_;
};
TestCluster* AssessLive::cluster_ = nullptr;

// Node 0 (A) owns slots 0-5460, node 1 (B) 5461-10922, node 2 (C) the rest.

TEST_F(AssessLive, S1HalfOpenSource) {
  const uint16_t s = 1000;
  ASSERT_TRUE(c().FillSlot(s, 5).ok());
  ASSERT_TRUE(c().SetMigrating(0, s, 1).ok());
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kHalfOpenSource) << a.reason;
  EXPECT_EQ(a.source.id, c().id(0));
  EXPECT_EQ(a.target.id, c().id(1));
  EXPECT_EQ(a.keys_source, 5);
  EXPECT_EQ(a.keys_target, 0);
  EXPECT_TRUE(a.complete);
  ASSERT_FALSE(a.plan.empty());
  EXPECT_EQ(a.plan[0].text, SetSlotOn(s, "STABLE", 0));
  ASSERT_TRUE(c().ResetSlot(s, 0).ok());
}

TEST_F(AssessLive, S1bHalfClosedTarget) {
  const uint16_t s = 1001;
  ASSERT_TRUE(c().FillSlot(s, 6).ok());
  ASSERT_TRUE(c().SetImporting(1, s, 0).ok());
  ASSERT_TRUE(c().SetMigrating(0, s, 1).ok());
  ASSERT_TRUE(c().MigrateKeys(0, 1, s, 2).ok());
  ASSERT_TRUE(c().SetStable(1, s).ok());  // the target lost its IMPORTING
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kHalfClosedTarget) << a.reason;
  EXPECT_EQ(a.keys_source, 4);
  EXPECT_EQ(a.keys_target, 2);
  ASSERT_FALSE(a.plan.empty());
  EXPECT_EQ(a.plan[0].text, SetSlotOn(s, "IMPORTING " + c().id(0), 1));
  ASSERT_TRUE(c().ResetSlot(s, 0).ok());
  EXPECT_EQ(*c().CountKeys(0, s), 6);
}

TEST_F(AssessLive, S2HalfOpenTarget) {
  const uint16_t s = 1002;
  ASSERT_TRUE(c().SetImporting(1, s, 0).ok());
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kHalfOpenTarget) << a.reason;
  ASSERT_FALSE(a.plan.empty());
  EXPECT_EQ(a.plan[0].text, SetSlotOn(s, "STABLE", 1));
  ASSERT_TRUE(c().ResetSlot(s, 0).ok());
}

TEST_F(AssessLive, S2bStrayWritesOnTarget) {
  const uint16_t s = 1003;
  ASSERT_TRUE(c().FillSlot(s, 2).ok());
  ASSERT_TRUE(c().SetImporting(1, s, 0).ok());
  ASSERT_TRUE(c().WriteKeys(1, s, 100, 3, 16, /*asking=*/true).ok());
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kStrayWritesOnTarget) << a.reason;
  EXPECT_EQ(a.keys_source, 2);
  EXPECT_EQ(a.keys_target, 3);
  EXPECT_EQ(a.intended_owner.id, c().id(0));
  ASSERT_TRUE(c().ResetSlot(s, 0).ok());
  EXPECT_EQ(*c().CountKeys(0, s), 5);
}

TEST_F(AssessLive, S3InterruptedReshard) {
  const uint16_t s = 1004;
  ASSERT_TRUE(c().FillSlot(s, 10).ok());
  ASSERT_TRUE(c().SetImporting(1, s, 0).ok());
  ASSERT_TRUE(c().SetMigrating(0, s, 1).ok());
  ASSERT_TRUE(c().MigrateKeys(0, 1, s, 4).ok());
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kInterruptedReshard) << a.reason;
  EXPECT_EQ(a.keys_source, 6);
  EXPECT_EQ(a.keys_target, 4);
  EXPECT_EQ(a.intended_owner.id, c().id(1));
  EXPECT_FALSE(a.rollback.empty());
  ASSERT_TRUE(c().ResetSlot(s, 0).ok());
}

TEST_F(AssessLive, S4aUnclaimedAfterPartialFinish) {
  const uint16_t s = 1005;
  ASSERT_TRUE(c().FillSlot(s, 3).ok());
  ASSERT_TRUE(c().SetImporting(1, s, 0).ok());
  ASSERT_TRUE(c().SetMigrating(0, s, 1).ok());
  ASSERT_TRUE(c().MigrateKeys(0, 1, s, 10).ok());
  // Finish in the wrong order: the source first (allowed: it has no keys; clears MIGRATING).
  ASSERT_TRUE(c().SetNode(0, s, 1).ok());
  auto a = Assess(s);
  EXPECT_EQ(a.signature, Signature::kUnclaimedAfterPartialFinish) << a.reason;
  EXPECT_EQ(a.keys_source, 0);
  EXPECT_EQ(a.keys_target, 3);
  ASSERT_GE(a.plan.size(), 2u);
  EXPECT_EQ(a.plan[1].text, SetSlotOn(s, "NODE " + c().id(1), 1));
  // Commit by hand, as the plan says; the slot now belongs to B.
  ASSERT_TRUE(c().SetNode(1, s, 1).ok());
  ASSERT_TRUE(c().SetNode(2, s, 1).ok());
  ASSERT_TRUE(c().WaitForAgreement(std::chrono::seconds(10)).ok());
  EXPECT_EQ(Assess(s).signature, Signature::kStable);
}

TEST_F(AssessLive, S8Unassigned) {
  const uint16_t with_keys = 1006;
  const uint16_t keyless = 1007;
  ASSERT_TRUE(c().FillSlot(with_keys, 4).ok());
  // DELSLOTS on the owner first, so no later gossip from it re-binds the slot elsewhere.
  ASSERT_TRUE(c().DelSlot(0, with_keys).ok());
  auto partial = Assess(with_keys);  // only A's view is empty so far
  EXPECT_EQ(partial.signature, Signature::kUnassigned) << partial.reason;
  EXPECT_EQ(partial.target.id, c().id(0));
  for (int i : {0, 1, 2}) {
    if (i != 0) {
      ASSERT_TRUE(c().DelSlot(i, with_keys).ok());
    }
    ASSERT_TRUE(c().DelSlot(i, keyless).ok());
  }
  auto a = Assess(with_keys);
  EXPECT_EQ(a.signature, Signature::kUnassigned) << a.reason;
  EXPECT_EQ(a.target.id, c().id(0));
  EXPECT_EQ(a.keys_target, 4);
  ASSERT_EQ(a.plan.size(), 3u);
  EXPECT_EQ(a.plan[1].text, StrCat("MULTI; CLUSTER ADDSLOTS ", with_keys,
                                   "; CLUSTER BUMPEPOCH; EXEC on ", c().address(0)));
  EXPECT_EQ(Assess(keyless).signature, Signature::kUnknown);  // no keys, no hint: no guess
  AssessOptions hint;
  hint.previous_owner = c().id(0);
  auto k = Assess(keyless, hint);
  EXPECT_EQ(k.signature, Signature::kUnassigned) << k.reason;
  EXPECT_EQ(k.target.id, c().id(0));
  // Give both back to A.
  ASSERT_TRUE(c().AddSlot(0, with_keys).ok());
  ASSERT_TRUE(c().AddSlot(0, keyless).ok());
  ASSERT_TRUE(c().WaitForAgreement(std::chrono::seconds(10)).ok());
}

}  // namespace
}  // namespace slotpilot::migration
