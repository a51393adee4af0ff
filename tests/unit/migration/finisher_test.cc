// Finisher against real 3-master clusters (tests/support/test_cluster.h), one scenario class of
// MIGRATION.md per test. Each test builds its state with plain cluster commands, runs the
// finisher, then checks what an operator would: every master agrees on the owner, no open
// marker is left, `redis-cli --cluster check` exits 0, every key reads back with its latest
// value through the owner, no key sits on two nodes, nothing was evicted.
#include "migration/finisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "migration/cluster_view.h"
#include "migration/lease.h"
#include "protocol/errors.h"
#include "protocol/slot.h"
#include "protocol/strings.h"
#include "spdlog/spdlog.h"
#include "tests/support/test_cluster.h"

namespace slotpilot::migration {
namespace {

using protocol::RespValue;
using slotpilot::testing::TestCluster;
using slotpilot::testing::TestClusterOptions;
using ::testing::HasSubstr;
using Result = FinishOutcome::Result;

constexpr int kA = 0;  // the slot's owner at start (slots are split evenly, in order)
constexpr int kB = 1;
constexpr uint16_t kSlot = 1234;  // owned by node 0; far from the control slot (node 2)

// What a watcher brings: a view, a lease (per sidecar id) and a finisher.
struct Sidecar {
  std::unique_ptr<ClusterView> view;
  std::unique_ptr<Lease> lease;
  std::unique_ptr<Finisher> finisher;
};

class FinisherTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCluster({}); }

  void StartCluster(TestClusterOptions options) {
    cluster_.reset();
    auto cluster = TestCluster::Start(std::move(options));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  TestCluster& c() { return *cluster_; }

  static FinisherOptions QuickOptions() {
    FinisherOptions o;
    o.batch_max_keys = 7;  // several batches even for small slots
    o.settle_timeout = std::chrono::milliseconds(8000);
    return o;
  }

  Sidecar MakeSidecar(std::string id, FinisherOptions options = QuickOptions(),
                      std::chrono::milliseconds ttl = std::chrono::seconds(30)) {
    Sidecar s;
    ClusterViewOptions vo;
    vo.seeds = c().Seeds();
    s.view = std::make_unique<ClusterView>(vo);
    LeaseOptions lo;
    lo.sidecar_id = std::move(id);
    lo.ttl = ttl;
    ClusterView* view = s.view.get();
    s.lease = std::make_unique<Lease>(lo, [view](const Endpoint& e) { return view->Client(e); });
    s.finisher = std::make_unique<Finisher>(view, s.lease.get(), std::move(options));
    return s;
  }

  FinishOutcome Run(RepairIntent intent, FinisherOptions options = QuickOptions()) {
    Sidecar s = MakeSidecar("sc-main", std::move(options));
    FinishOutcome out = s.finisher->Run(kSlot, std::move(intent));
    for (const std::string& w : out.warnings) std::cerr << "warning: " << w << "\n";
    return out;
  }

  RepairIntent Forward(int from, int to) {
    return {RepairIntentKind::kForward, c().id(from), c().id(to)};
  }
  RepairIntent Drain(int from, int to) {
    return {RepairIntentKind::kDrain, c().id(from), c().id(to)};
  }
  RepairIntent Close(int owner) { return {RepairIntentKind::kClose, "", c().id(owner)}; }
  RepairIntent Assign(int node) { return {RepairIntentKind::kAssign, "", c().id(node)}; }

  // Writes keys first..first+n-1 of kSlot on `node` with values "<tag>-<i>", remembering them.
  void Write(int node, int first, int n, std::string_view tag, bool asking = false) {
    auto client = c().client(node);
    ASSERT_TRUE(client.ok()) << client.status();
    std::vector<std::vector<std::string>> commands;
    for (int i = first; i < first + n; ++i) {
      const std::string key = TestCluster::KeyInSlot(kSlot, i);
      const std::string value = StrCat(tag, "-", i);
      if (asking) commands.push_back({"ASKING"});
      commands.push_back({"SET", key, value});
      expected_[key] = value;
    }
    auto replies = (*client)->Pipeline(commands);
    ASSERT_TRUE(replies.ok()) << replies.status();
    for (const RespValue& r : *replies) ASSERT_FALSE(r.is_error()) << r.str;
  }

  int64_t Count(int node) {
    auto n = c().CountKeys(node, kSlot);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // `redis-cli --cluster check`: its exit code, and its output in *output.
  static int RedisCliCheck(int port, std::string* output) {
    const std::string cmd =
        StrCat("timeout 30 redis-cli --cluster check 127.0.0.1:", port, " 2>&1");
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) return -1;
    char buf[4096];
    size_t n = 0;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
    const int rc = pclose(pipe);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }

  // Everything an operator checks after a repair; `owner` is the expected owner.
  void ExpectRepaired(int owner) {
    ASSERT_TRUE(c().WaitForAgreement(std::chrono::seconds(10)).ok());
    for (int i = 0; i < c().size(); ++i) {
      auto o = c().OwnerOf(kSlot, i);
      ASSERT_TRUE(o.ok()) << o.status();
      EXPECT_EQ(*o, owner) << "view of node " << i;
      auto nodes = c().Must(i, {"CLUSTER", "NODES"});
      ASSERT_TRUE(nodes.ok());
      EXPECT_THAT(nodes->str, ::testing::Not(HasSubstr("->-"))) << "node " << i;
      EXPECT_THAT(nodes->str, ::testing::Not(HasSubstr("-<-"))) << "node " << i;
      if (i != owner) {
        EXPECT_EQ(Count(i), 0) << "keys left on node " << i;
      }
      auto stats = c().Must(i, {"INFO", "stats"});
      ASSERT_TRUE(stats.ok());
      EXPECT_THAT(stats->str, HasSubstr("evicted_keys:0\r")) << "node " << i;
    }
    EXPECT_EQ(Count(owner), static_cast<int64_t>(expected_.size()));
    for (const auto& [key, value] : expected_) {
      auto got = c().Command(owner, {"GET", key});
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->str, value) << key << " " << protocol::DebugString(*got);
    }
    std::string check;
    EXPECT_EQ(RedisCliCheck(c().port(0), &check), 0) << check;
  }

  std::unique_ptr<TestCluster> cluster_;
  std::map<std::string, std::string> expected_;  // key -> latest value
};

// --- Pure planning -------------------------------------------------------------------------------

TEST(PlanNextStep, ForwardOpensTargetFirstThenSourceThenMovesThenCommits) {
  ClusterSnapshot snap;
  for (const char* id : {"aaaa", "bbbb", "cccc"}) {
    MasterView m;
    m.id = id;
    m.reachable = true;
    m.endpoint = Endpoint{"127.0.0.1", 7000};
    protocol::ClusterNode self;
    self.id = "aaaa";
    m.nodes.push_back(self);
    m.owner_index[7] = 0;  // everyone: owner aaaa
    m.keys[7] = 0;
    snap.masters.push_back(m);
  }
  snap.masters[0].keys[7] = 10;
  const RepairIntent forward{RepairIntentKind::kForward, "aaaa", "bbbb"};
  FinisherStep s = PlanNextStep(forward, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kSetImporting);
  EXPECT_EQ(s.node, "bbbb");
  EXPECT_EQ(s.peer, "aaaa");
  snap.masters[1].importing.push_back({7, "aaaa"});
  s = PlanNextStep(forward, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kSetMigrating);
  EXPECT_EQ(s.node, "aaaa");
  snap.masters[0].migrating.push_back({7, "bbbb"});
  EXPECT_EQ(PlanNextStep(forward, snap, 7).kind, FinisherStep::Kind::kMoveKeys);
  // Keys on a third node: not this intent's business.
  snap.masters[2].keys[7] = 1;
  EXPECT_EQ(PlanNextStep(forward, snap, 7).kind, FinisherStep::Kind::kStop);
  snap.masters[2].keys[7] = 0;
  // All keys moved: commit on the target.
  snap.masters[0].keys[7] = 0;
  snap.masters[1].keys[7] = 10;
  s = PlanNextStep(forward, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kCommit);
  EXPECT_EQ(s.node, "bbbb");
  // Never commit while the target is not IMPORTING: re-open it first.
  snap.masters[1].importing.clear();
  EXPECT_EQ(PlanNextStep(forward, snap, 7).kind, FinisherStep::Kind::kSetImporting);
  // An unreachable master: wait, never act.
  snap.masters[2].reachable = false;
  EXPECT_EQ(PlanNextStep(forward, snap, 7).kind, FinisherStep::Kind::kWait);
}

TEST(PlanNextStep, DrainClosesTheOwnersMigratingFirst) {
  ClusterSnapshot snap;
  for (const char* id : {"aaaa", "bbbb"}) {
    MasterView m;
    m.id = id;
    m.reachable = true;
    protocol::ClusterNode self;
    self.id = "aaaa";
    m.nodes.push_back(self);
    m.owner_index[7] = 0;
    m.keys[7] = 5;
    snap.masters.push_back(m);
  }
  snap.masters[0].migrating.push_back({7, "bbbb"});
  snap.masters[1].importing.push_back({7, "aaaa"});
  const RepairIntent drain{RepairIntentKind::kDrain, "bbbb", "aaaa"};
  FinisherStep s = PlanNextStep(drain, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kSetStable);
  EXPECT_EQ(s.node, "aaaa");
  snap.masters[0].migrating.clear();
  s = PlanNextStep(drain, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kMoveKeys);
  EXPECT_EQ(s.node, "bbbb");
  EXPECT_EQ(s.peer, "aaaa");
  snap.masters[1].keys[7] = 0;
  s = PlanNextStep(drain, snap, 7);
  EXPECT_EQ(s.kind, FinisherStep::Kind::kSetStable);
  EXPECT_EQ(s.node, "bbbb");
  snap.masters[1].importing.clear();
  EXPECT_EQ(PlanNextStep(drain, snap, 7).kind, FinisherStep::Kind::kDone);
}

// --- Lab fact behind the drain order (MIGRATION.md A.2 step 7 applied to RESTORE-ASKING) ---------

TEST_F(FinisherTest, LabRollbackNeedsAStableOwnerAndAnImportingSource) {
  Write(kA, 0, 4, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 2).ok());
  auto keys = c().Must(kB, {"CLUSTER", "GETKEYSINSLOT", std::to_string(kSlot), "10"});
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->elements.size(), 2u);
  const std::string key = keys->elements[0].str;
  const std::vector<std::string> back = {
      "MIGRATE", "127.0.0.1", std::to_string(c().port(kA)), "", "0", "2000", "KEYS", key};
  // The owner still MIGRATING: its RESTORE-ASKING for a key it lacks is answered with ASK.
  auto r = c().Command(kB, back);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->str, HasSubstr("Target instance replied with error: ASK"));
  // The source not open at all: MIGRATE itself is redirected.
  ASSERT_TRUE(c().SetStable(kB, kSlot).ok());
  r = c().Command(kB, back);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->str, HasSubstr("MOVED"));
  // Owner stable, source importing: accepted.
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetStable(kA, kSlot).ok());
  r = c().Command(kB, back);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->str, "OK");
}

// --- S1: source MIGRATING, target not importing
// ---------------------------------------------------

TEST_F(FinisherTest, S1HalfOpenSourceWithoutTargetKeysIsClosed) {
  Write(kA, 0, 20, "v");
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  FinishOutcome out = Run(Close(kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 0u);
  ExpectRepaired(kA);
}

TEST_F(FinisherTest, S1bHalfOpenSourceWithTargetKeysIsForwarded) {
  Write(kA, 0, 20, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 6).ok());
  ASSERT_TRUE(c().SetStable(kB, kSlot).ok());  // the target forgot it was importing
  FinishOutcome out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 14u);
  EXPECT_EQ(out.keys_before, 20);
  EXPECT_EQ(out.keys_after, 20);
  ExpectRepaired(kB);
}

// --- S2: target IMPORTING, source not migrating
// ---------------------------------------------------

TEST_F(FinisherTest, S2HalfOpenTargetWithoutStrayKeysIsClosed) {
  Write(kA, 0, 20, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  FinishOutcome out = Run(Close(kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kA);
}

TEST_F(FinisherTest, S2bStrayKeysOnTheTargetAreDrainedToTheOwner) {
  Write(kA, 0, 20, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  Write(kB, 100, 9, "stray", /*asking=*/true);
  ASSERT_EQ(Count(kB), 9);
  FinishOutcome out = Run(Drain(kB, kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 9u);
  ExpectRepaired(kA);
}

// --- S3: interrupted reshard
// ----------------------------------------------------------------------

TEST_F(FinisherTest, S3InterruptedReshardIsFinishedForwardByIntent) {
  Write(kA, 0, 40, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 25).ok());  // more on B than on A: still forward
  FinishOutcome out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 15u);
  EXPECT_GT(out.bytes_moved, 0u);
  EXPECT_EQ(out.failures, 0u);
  EXPECT_GE(out.steps, 3);  // at least 3 batches of <= 7 keys, a commit, a propagation
  EXPECT_GT(out.token, 0u);
  ExpectRepaired(kB);
  // The lease is released and the journal says done.
  Sidecar other = MakeSidecar("sc-other");
  ASSERT_TRUE(other.lease->UpdateView(*other.view->Poll({})).ok());
  auto holder = other.lease->Holder(kSlot);
  ASSERT_TRUE(holder.ok());
  EXPECT_FALSE(holder->has_value());
  auto journal = other.lease->ReadJournal(kSlot);
  ASSERT_TRUE(journal.ok() && journal->has_value());
  EXPECT_EQ((*journal)->step, "done");
  EXPECT_EQ((*journal)->action, "forward");
}

TEST_F(FinisherTest, S3RollbackDrainsTheMovedKeysBackToTheSource) {
  Write(kA, 0, 40, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 15).ok());
  FinishOutcome out = Run(Drain(kB, kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 15u);
  ExpectRepaired(kA);
}

// --- S4a: unclaimed after a partial finish
// --------------------------------------------------------

TEST_F(FinisherTest, S4aUnclaimedSlotIsCommittedOnTheImporter) {
  Write(kA, 0, 12, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 100).ok());
  ASSERT_EQ(Count(kA), 0);
  ASSERT_TRUE(c().SetNode(kA, kSlot, kB).ok());  // finished on the source only (#7116)
  auto own_a = c().OwnerOf(kSlot, kA);
  auto own_b = c().OwnerOf(kSlot, kB);
  ASSERT_TRUE(own_a.ok() && own_b.ok());
  ASSERT_EQ(*own_a, kB);
  ASSERT_EQ(*own_b, kA);
  FinishOutcome out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_moved, 0u);
  ExpectRepaired(kB);
}

// --- Conflicts
// ------------------------------------------------------------------------------------

TEST_F(FinisherTest, BusyKeyIsResolvedWithTheSourcesNewerValue) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  // A copy left on B (e.g. an IOERR while reading), then a client updates the source's copy.
  const std::string key = TestCluster::KeyInSlot(kSlot, 3);
  auto copy = c().Command(
      kA, {"MIGRATE", "127.0.0.1", std::to_string(c().port(kB)), key, "0", "2000", "COPY"});
  ASSERT_TRUE(copy.ok());
  ASSERT_EQ(copy->str, "OK");
  Write(kA, 3, 1, "updated-on-A-after-copy");
  FinishOutcome out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.keys_replaced, 1u);
  EXPECT_EQ(out.conflicts_stashed, 1u);  // the target's stale copy, before REPLACE
  ExpectRepaired(kB);
}

TEST_F(FinisherTest, DrainConflictKeepsTheOwnersCopyAndStashesTheOther) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  // B holds a stray copy of key 4 (different value) and a stray new key 50.
  auto client = c().client(kB);
  ASSERT_TRUE(client.ok());
  const std::string dup = TestCluster::KeyInSlot(kSlot, 4);
  auto r = (*client)->Pipeline({{"ASKING"}, {"SET", dup, "stale-on-B"}});
  ASSERT_TRUE(r.ok());
  Write(kB, 50, 1, "stray", /*asking=*/true);
  FinishOutcome out = Run(Drain(kB, kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_EQ(out.conflicts_stashed, 1u);
  ExpectRepaired(kA);
  // The losing copy can be restored from the stash.
  Sidecar s = MakeSidecar("sc-reader");
  ASSERT_TRUE(s.lease->UpdateView(*s.view->Poll({})).ok());
  const std::string stash = Lease::StashKey(kSlot, out.token, dup);
  auto owner = c().OwnerOf(Lease::ControlSlot());
  ASSERT_TRUE(owner.ok());
  auto payload = c().Command(*owner, {"GET", stash});
  ASSERT_TRUE(payload.ok());
  EXPECT_FALSE(payload->str.empty());
}

// --- A big key with a too-small MIGRATE timeout
// ---------------------------------------------------

TEST_F(FinisherTest, BigKeyWithTinyTimeoutRecoversFromIoerr) {
  Write(kA, 0, 5, "v");
  auto client = c().client(kA);
  ASSERT_TRUE(client.ok());
  const std::string big_key = TestCluster::KeyInSlot(kSlot, 99);
  std::string big_value(4 << 20, 'x');
  for (size_t i = 0; i < big_value.size(); i += 4096)
    big_value[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE((*client)->Command({"SET", big_key, big_value}).ok());
  expected_[big_key] = big_value;
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  FinisherOptions o = QuickOptions();
  o.migrate_min_timeout = std::chrono::milliseconds(1);
  o.migrate_timeout_bytes_per_sec = 1ull << 50;  // derived timeout: 1 ms
  FinishOutcome out = Run(Forward(kA, kB), o);
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_GE(out.failures, 1u) << "expected at least one IOERR with a 1 ms timeout";
  ExpectRepaired(kB);
}

// --- Target short of memory
// -----------------------------------------------------------------------

TEST_F(FinisherTest, TargetWithoutHeadroomIsRefusedBeforeAnyChange) {
  Write(kA, 0, 200, "v");
  ASSERT_TRUE(c().WriteKeys(kA, kSlot, 1000, 200, 20000).ok());  // ~4 MB more on the source
  for (int i = 1000; i < 1200; ++i)
    expected_[TestCluster::KeyInSlot(kSlot, i)] = std::string(20000, 'v');
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  auto info = c().Must(kB, {"INFO", "memory"});
  ASSERT_TRUE(info.ok());
  const size_t at = info->str.find("used_memory:");
  const uint64_t used = std::stoull(info->str.substr(at + 12));
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", std::to_string(used + (3 << 20))}).ok());
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}).ok());
  auto before = c().StableClusterText();
  ASSERT_TRUE(before.ok());
  FinisherOptions o = QuickOptions();
  o.sample_keys = 512;
  FinishOutcome out = Run(Forward(kA, kB), o);
  EXPECT_EQ(out.result, Result::kRefused) << out.reason;
  EXPECT_THAT(out.reason, HasSubstr("headroom"));
  EXPECT_EQ(out.keys_moved, 0u);
  auto after = c().StableClusterText();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*before, *after);
  EXPECT_EQ(Count(kB), 0);
  // With room again, the same intent goes through.
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", "0"}).ok());
  out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kB);
}

TEST_F(FinisherTest, EvictingTargetNearItsLimitIsRefusedOutright) {
  ASSERT_TRUE(c().WriteKeys(kA, kSlot, 0, 200, 20000).ok());
  for (int i = 0; i < 200; ++i)
    expected_[TestCluster::KeyInSlot(kSlot, i)] = std::string(20000, 'v');
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  // The finisher's own estimate: MEMORY USAGE of every key (fewer than sample_keys... or all).
  uint64_t import_bytes = 0;
  for (int i = 0; i < 200; ++i) {
    auto n = c().Must(kA, {"MEMORY", "USAGE", TestCluster::KeyInSlot(kSlot, i), "SAMPLES", "0"});
    ASSERT_TRUE(n.ok());
    import_bytes += n->integer;
  }
  auto info = c().Must(kB, {"INFO", "memory"});
  ASSERT_TRUE(info.ok());
  const uint64_t used = std::stoull(info->str.substr(info->str.find("used_memory:") + 12));
  // maxmemory such that the import fits with headroom (a noeviction target would accept it) but
  // ends above 90% of maxmemory: with an eviction policy that is refused outright.
  const double need = static_cast<double>(used) + 1.3 * static_cast<double>(import_bytes);
  const uint64_t maxmemory = static_cast<uint64_t>(need / 0.93);
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", std::to_string(maxmemory)}).ok());
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}).ok());
  FinisherOptions o = QuickOptions();
  o.sample_keys = 256;  // every key: the estimate matches the test's
  o.memory_headroom_bytes = 64 << 10;
  FinishOutcome out = Run(Forward(kA, kB), o);
  EXPECT_EQ(out.result, Result::kRefused) << out.reason;
  EXPECT_THAT(out.reason, HasSubstr("evict"));
  EXPECT_EQ(Count(kB), 0);
  auto stats = c().Must(kB, {"INFO", "stats"});
  ASSERT_TRUE(stats.ok());
  EXPECT_THAT(stats->str, HasSubstr("evicted_keys:0\r"));
  // The same limit with noeviction: the import fits, so it goes through and nothing is evicted.
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}).ok());
  out = Run(Forward(kA, kB), o);
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", "0"}).ok());
  ExpectRepaired(kB);
}

// --- S8: unassigned
// -------------------------------------------------------------------------------

TEST_F(FinisherTest, S8UnassignedSlotWithKeysIsAssignedToTheirHolder) {
  Write(kA, 0, 8, "v");
  // A careless operator: DELSLOTS everywhere, A keeps its keys.
  for (int i = 0; i < c().size(); ++i) ASSERT_TRUE(c().DelSlot(i, kSlot).ok()) << i;
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        for (int i = 0; i < c().size(); ++i) {
          auto o = c().OwnerOf(kSlot, i);
          if (!o.ok() || *o != -1) return false;
        }
        return true;
      },
      std::chrono::seconds(10)));
  FinishOutcome out = Run(Assign(kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kA);
}

TEST_F(FinisherTest, S8UnassignedEmptySlotGoesToTheGivenPreviousOwner) {
  for (int i = 0; i < c().size(); ++i) ASSERT_TRUE(c().DelSlot(i, kSlot).ok()) << i;
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        for (int i = 0; i < c().size(); ++i) {
          auto o = c().OwnerOf(kSlot, i);
          if (!o.ok() || *o != -1) return false;
        }
        return true;
      },
      std::chrono::seconds(10)));
  FinishOutcome out = Run(Assign(kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kB);
}

// --- Target runs out of memory in the middle of the move
// ------------------------------------------

TEST_F(FinisherTest, OomMidMoveStopsWithoutCommitAndResumesLater) {
  ASSERT_TRUE(c().WriteKeys(kA, kSlot, 0, 150, 20000).ok());
  for (int i = 0; i < 150; ++i)
    expected_[TestCluster::KeyInSlot(kSlot, i)] = std::string(20000, 'v');
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  auto info = c().Must(kB, {"INFO", "memory"});
  ASSERT_TRUE(info.ok());
  const uint64_t used = std::stoull(info->str.substr(info->str.find("used_memory:") + 12));
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", std::to_string(used + (1 << 20))}).ok());
  FinisherOptions o = QuickOptions();
  o.memory_factor = 0;  // a preflight that guessed wrong: the import does not fit after all
  o.memory_headroom_bytes = 0;
  FinishOutcome out = Run(Forward(kA, kB), o);
  EXPECT_EQ(out.result, Result::kFailed) << out.reason;
  EXPECT_THAT(out.reason, HasSubstr("out of memory"));
  EXPECT_GT(Count(kA), 0);  // partial: no commit, both markers still open
  auto owner = c().OwnerOf(kSlot, kB);
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(*owner, kA);
  auto nodes = c().Must(kB, {"CLUSTER", "NODES"});
  ASSERT_TRUE(nodes.ok());
  EXPECT_THAT(nodes->str, HasSubstr("-<-"));
  ASSERT_TRUE(c().Must(kB, {"CONFIG", "SET", "maxmemory", "0"}).ok());
  out = Run(Forward(kA, kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kB);
}

// --- Through the watcher's seam: SlotRepairer::Repair with W1's AssessSlot -----------------------

class RepairSeamTest : public FinisherTest {
 protected:
  SlotAssessment Assess() {
    ClusterViewOptions vo;
    vo.seeds = c().Seeds();
    ClusterView view(vo);
    auto snap = view.Poll({kSlot});
    EXPECT_TRUE(snap.ok()) << snap.status();
    return snap.ok() ? AssessSlot(*snap, kSlot) : SlotAssessment{};
  }
};

TEST_F(RepairSeamTest, InterruptedReshardFinishesForward) {
  Write(kA, 0, 30, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 12).ok());
  const SlotAssessment plan = Assess();
  ASSERT_EQ(plan.signature, Signature::kInterruptedReshard) << plan.reason;
  Sidecar s = MakeSidecar("sc-seam");
  RepairOutcome r = s.finisher->Repair(kSlot, plan, RepairKind::kFinish);
  ASSERT_EQ(r.result, RepairOutcome::Result::kDone) << r.summary;
  EXPECT_TRUE(r.mutated);
  EXPECT_EQ(r.keys_moved, 18);
  EXPECT_FALSE(r.steps.empty());
  ExpectRepaired(kB);
}

TEST_F(RepairSeamTest, InterruptedReshardRollsBackOnRequest) {
  Write(kA, 0, 30, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 12).ok());
  const SlotAssessment plan = Assess();
  ASSERT_FALSE(plan.rollback.empty());
  Sidecar s = MakeSidecar("sc-seam");
  RepairOutcome r = s.finisher->Repair(kSlot, plan, RepairKind::kRollback);
  ASSERT_EQ(r.result, RepairOutcome::Result::kDone) << r.summary;
  EXPECT_EQ(r.keys_moved, 12);
  ExpectRepaired(kA);
}

TEST_F(RepairSeamTest, StrayWritesAreDrainedAndAStalePlanIsRefused) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  const SlotAssessment half_open = Assess();  // S2, no stray keys yet
  ASSERT_EQ(half_open.signature, Signature::kHalfOpenTarget) << half_open.reason;
  Write(kB, 40, 3, "stray", /*asking=*/true);
  Sidecar s = MakeSidecar("sc-seam");
  // The plan was made on an older state: the repairer re-assesses and does nothing.
  RepairOutcome r = s.finisher->Repair(kSlot, half_open, RepairKind::kFinish);
  EXPECT_EQ(r.result, RepairOutcome::Result::kNothingToDo) << r.summary;
  EXPECT_FALSE(r.mutated);
  EXPECT_EQ(Count(kB), 3);
  const SlotAssessment plan = Assess();
  ASSERT_EQ(plan.signature, Signature::kStrayWritesOnTarget) << plan.reason;
  r = s.finisher->Repair(kSlot, plan, RepairKind::kFinish);
  ASSERT_EQ(r.result, RepairOutcome::Result::kDone) << r.summary;
  ExpectRepaired(kA);
}

TEST_F(RepairSeamTest, StaleMigratingMarkerAfterAHalfFinishIsClosed) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 100).ok());
  ASSERT_TRUE(c().SetNode(kB, kSlot, kB).ok());  // committed on the target only
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        auto o = c().OwnerOf(kSlot, kA);
        return o.ok() && *o == kB;  // B's bumped claim reached A by gossip
      },
      std::chrono::seconds(10)));
  SlotAssessment plan;
  ASSERT_TRUE(TestCluster::WaitUntil(
      [&] {
        plan = Assess();
        return plan.signature == Signature::kStaleMigratingMarker;
      },
      std::chrono::seconds(10)))
      << plan.reason;
  Sidecar s = MakeSidecar("sc-seam");
  RepairOutcome r = s.finisher->Repair(kSlot, plan, RepairKind::kFinish);
  ASSERT_EQ(r.result, RepairOutcome::Result::kDone) << r.summary;
  ExpectRepaired(kB);
}

TEST_F(RepairSeamTest, ForeignLeaseDefers) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  const SlotAssessment plan = Assess();
  Sidecar other = MakeSidecar("sc-other");
  ASSERT_TRUE(other.lease->UpdateView(*other.view->Poll({})).ok());
  ASSERT_TRUE(*other.lease->Acquire(kSlot));
  Sidecar s = MakeSidecar("sc-seam");
  RepairOutcome r = s.finisher->Repair(kSlot, plan, RepairKind::kFinish);
  EXPECT_EQ(r.result, RepairOutcome::Result::kDeferred) << r.summary;
  EXPECT_EQ(r.lease_holder, "sc-other");
  EXPECT_FALSE(r.mutated);
}

// --- One actor; crash safety
// ----------------------------------------------------------------------

TEST_F(FinisherTest, ALeaseHeldByAnotherSidecarMeansHandsOff) {
  Write(kA, 0, 10, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  Sidecar other = MakeSidecar("sc-other");
  ASSERT_TRUE(other.lease->UpdateView(*other.view->Poll({})).ok());
  ASSERT_TRUE(*other.lease->Acquire(kSlot));
  auto before = c().StableClusterText();
  FinishOutcome out = Run(Forward(kA, kB));
  EXPECT_EQ(out.result, Result::kLeaseBusy);
  EXPECT_THAT(out.reason, HasSubstr("sc-other"));
  auto after = c().StableClusterText();
  EXPECT_EQ(*before, *after);
  EXPECT_EQ(Count(kB), 0);
}

TEST_F(FinisherTest, ASuccessorResumesTheJournalAfterACrashBetweenSteps) {
  Write(kA, 0, 40, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 10).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  // A half-done re-open: the source forgot MIGRATING (e.g. its failover), so the state now also
  // reads as "stray keys on the target" (S2b), whose plan would be the opposite direction.
  ASSERT_TRUE(c().SetStable(kA, kSlot).ok());
  constexpr auto kTtl = std::chrono::milliseconds(1500);
  FinisherOptions crash = QuickOptions();
  crash.before_step = [](int index, const FinisherStep&) { return index < 3; };
  Sidecar first = MakeSidecar("sc-first", crash, kTtl);
  FinishOutcome aborted = first.finisher->Run(kSlot, Forward(kA, kB));
  ASSERT_EQ(aborted.result, Result::kAborted) << aborted.reason;
  EXPECT_EQ(aborted.steps, 3);
  EXPECT_GT(Count(kA), 0);
  EXPECT_GT(Count(kB), 10);

  // Another sidecar, told to drain (what the signature alone suggests): it waits for the lease,
  // then resumes the journal's forward instead.
  Sidecar second = MakeSidecar("sc-second", QuickOptions(), kTtl);
  FinishOutcome busy = second.finisher->Run(kSlot, Drain(kB, kA));
  EXPECT_EQ(busy.result, Result::kLeaseBusy);
  EXPECT_THAT(busy.reason, HasSubstr("sc-first"));
  std::this_thread::sleep_for(kTtl + std::chrono::milliseconds(200));
  FinishOutcome out = second.finisher->Run(kSlot, Drain(kB, kA));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  EXPECT_TRUE(out.resumed);
  EXPECT_EQ(out.intent.kind, RepairIntentKind::kForward);
  EXPECT_GT(out.token, aborted.token);
  ExpectRepaired(kB);
}

TEST_F(FinisherTest, CrashAfterCommitIsFinishedBySuccessor) {
  Write(kA, 0, 12, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  constexpr auto kTtl = std::chrono::milliseconds(1500);
  FinisherOptions crash = QuickOptions();
  bool committed = false;
  crash.before_step = [&](int, const FinisherStep& step) {
    if (committed) return false;  // die right after the commit, before telling the source
    committed = step.kind == FinisherStep::Kind::kCommit;
    return true;
  };
  Sidecar first = MakeSidecar("sc-first", crash, kTtl);
  FinishOutcome aborted = first.finisher->Run(kSlot, Forward(kA, kB));
  ASSERT_EQ(aborted.result, Result::kAborted) << aborted.reason;
  ASSERT_TRUE(committed);
  std::this_thread::sleep_for(kTtl + std::chrono::milliseconds(200));
  Sidecar second = MakeSidecar("sc-second", QuickOptions(), kTtl);
  FinishOutcome out = second.finisher->Run(kSlot, Close(kB));
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  ExpectRepaired(kB);
}

// --- Clients keep writing while the slot moves
// ----------------------------------------------------

TEST_F(FinisherTest, WritesDuringTheForwardAreKept) {
  Write(kA, 0, 60, "v");
  ASSERT_TRUE(c().SetImporting(kB, kSlot, kA).ok());
  ASSERT_TRUE(c().SetMigrating(kA, kSlot, kB).ok());
  ASSERT_TRUE(c().MigrateKeys(kA, kB, kSlot, 10).ok());
  std::atomic<bool> stop{false};
  std::map<std::string, std::string> written;
  std::string writer_error;
  std::thread writer([&] {
    // A cluster client in miniature: follows ASK (with ASKING) and MOVED, one key at a time.
    std::vector<std::unique_ptr<RedisClient>> clients;
    for (int i = 0; i < c().size(); ++i) {
      auto cl = c().Connect(i);
      if (!cl.ok()) return;
      clients.push_back(*std::move(cl));
    }
    for (int round = 0; !stop.load() && round < 100000; ++round) {
      const int i = round % 70;  // existing keys and new ones
      const std::string key = TestCluster::KeyInSlot(kSlot, i);
      const std::string value = StrCat("w", round);
      int node = kA;
      bool asking = false;
      for (int hop = 0; hop < 5; ++hop) {
        auto r = asking ? clients[node]->Pipeline({{"ASKING"}, {"SET", key, value}})
                        : clients[node]->Pipeline({{"SET", key, value}});
        if (!r.ok()) {
          writer_error = std::string(r.status().message());
          return;
        }
        const RespValue& reply = r->back();
        if (!reply.is_error()) {
          written[key] = value;
          break;
        }
        auto redirect = protocol::ParseRedirect(reply.str);
        if (!redirect.ok()) {
          if (reply.str.rfind("TRYAGAIN", 0) == 0 || reply.str.rfind("CLUSTERDOWN", 0) == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            continue;
          }
          writer_error = reply.str;
          return;
        }
        for (int n = 0; n < c().size(); ++n) {
          if (c().port(n) == redirect->port) node = n;
        }
        asking = redirect->kind == protocol::ErrorKind::kAsk;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  FinisherOptions o = QuickOptions();
  o.batch_max_keys = 3;
  o.batch_pause = std::chrono::milliseconds(20);
  FinishOutcome out = Run(Forward(kA, kB), o);
  stop = true;
  writer.join();
  ASSERT_TRUE(writer_error.empty()) << writer_error;
  ASSERT_EQ(out.result, Result::kDone) << out.reason;
  for (const auto& [k, v] : written) expected_[k] = v;
  ExpectRepaired(kB);
}

}  // namespace
}  // namespace slotpilot::migration
