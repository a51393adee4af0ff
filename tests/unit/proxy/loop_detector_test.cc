// The redirect-loop classifier over recorded hop chains (MIGRATION.md A.3 gives the node answers
// each chain is made of), the per-worker LoopTracker, MergeLoopRecords and LoopReportQueue.
#include "proxy/loop_detector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "proxy/loop_tracker.h"
#include "proxy/request.h"

namespace slotpilot::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Worker-local node indexes, named after the lab's masters.
constexpr uint16_t kA = 0;
constexpr uint16_t kB = 1;
constexpr uint16_t kC = 2;
constexpr int kMaxRedirects = 5;  // the default of --max-redirects

HopChain::Hop Ask(uint16_t from, uint16_t to) { return {from, to, RedirectKind::kAsk}; }
HopChain::Hop Moved(uint16_t from, uint16_t to) { return {from, to, RedirectKind::kMoved}; }

struct Verdict {
  LoopPattern pattern = LoopPattern::kNone;
  size_t at_hop = 0;  // hops in the chain when the verdict was reached (0: never)
  friend bool operator==(const Verdict&, const Verdict&) = default;
};

void PrintTo(const Verdict& v, std::ostream* os) {
  *os << LoopPatternName(v.pattern) << " at hop " << v.at_hop;
}

// Feeds the hops one at a time, as RedirectFollower does (it classifies after every hop and stops
// at the first verdict other than kNone). A verdict of kNone means every hop would be followed.
Verdict Follow(const std::vector<HopChain::Hop>& hops, int max_redirects = kMaxRedirects) {
  HopChain chain;
  for (const HopChain::Hop& hop : hops) {
    chain.Add(hop);
    LoopPattern p = ClassifyChain(chain, max_redirects);
    if (p != LoopPattern::kNone) return {p, chain.size()};
  }
  return {};
}

std::string Address(uint16_t node) { return "10.0.0." + std::to_string(node + 1) + ":7000"; }

// ---- ClassifyChain ------------------------------------------------------------------------------

TEST(ClassifyChainTest, EmptyChainIsNoLoop) {
  EXPECT_EQ(ClassifyChain(HopChain(), kMaxRedirects), LoopPattern::kNone);
}

// S1: A MIGRATING -> B, B not importing. A answers ASK B for an absent key, B answers MOVED A even
// after ASKING: caught when the MOVED points back at A, after two sends.
TEST(ClassifyChainTest, HalfOpenMigrationIsAskMoved) {
  EXPECT_EQ(Follow({Ask(kA, kB), Moved(kB, kA)}), (Verdict{LoopPattern::kAskMoved, 2}));
}

// The same half-open slot reached through a stale slot map (C no longer owns the slot).
TEST(ClassifyChainTest, HalfOpenMigrationBehindAStaleMapIsStillAskMoved) {
  EXPECT_EQ(Follow({Moved(kC, kA), Ask(kA, kB), Moved(kB, kA)}),
            (Verdict{LoopPattern::kAskMoved, 3}));
}

// S4a: A says B owns the slot, B (still importing) says A.
TEST(ClassifyChainTest, MastersDisagreeingOnTheOwnerIsMovedMoved) {
  EXPECT_EQ(Follow({Moved(kA, kB), Moved(kB, kA)}), (Verdict{LoopPattern::kMovedMoved, 2}));
  EXPECT_EQ(Follow({Moved(kB, kA), Moved(kA, kB)}), (Verdict{LoopPattern::kMovedMoved, 2}));
}

TEST(ClassifyChainTest, ThreeMastersChasingEachOtherIsMovedMoved) {
  EXPECT_EQ(Follow({Moved(kA, kB), Moved(kB, kC), Moved(kC, kA)}),
            (Verdict{LoopPattern::kMovedMoved, 3}));
}

// Right after a slot changed owner the proxy's map is stale for one request: one extra MOVED that
// ends at a node serving the slot is not a loop.
TEST(ClassifyChainTest, OneExtraMovedAfterAnOwnerChangeIsNotALoop) {
  EXPECT_EQ(Follow({Moved(kA, kB)}), Verdict{});
}

// A healthy migration: ASK to the importing node, which serves (also behind a stale map).
TEST(ClassifyChainTest, HealthyMigrationIsNotALoop) {
  EXPECT_EQ(Follow({Ask(kA, kB)}), Verdict{});
  EXPECT_EQ(Follow({Moved(kC, kA), Ask(kA, kB)}), Verdict{});
}

// The slot moved A -> B and is now being migrated back (B MIGRATING -> A, A IMPORTING <- B) while
// this worker's map still says A. A answers MOVED B (no ASKING), B answers ASK A, and A serves
// the request because it now comes with ASKING (MIGRATION.md A.2 step 8). Returning to A with
// ASKING is a different request from the first visit: nothing repeats, so no loop.
TEST(ClassifyChainTest, MigrationBackBehindAStaleMapIsNotALoop) {
  EXPECT_EQ(Follow({Moved(kA, kB), Ask(kB, kA)}), Verdict{});
}

// ... but if A is not importing, it answers MOVED B again: now the request repeats exactly (B
// without ASKING), the half-open pattern seen from the other side.
TEST(ClassifyChainTest, MigrationBackToANodeThatIsNotImportingIsAskMoved) {
  EXPECT_EQ(Follow({Moved(kA, kB), Ask(kB, kA), Moved(kA, kB)}),
            (Verdict{LoopPattern::kAskMoved, 3}));
}

// A node redirecting to itself can never make progress: flagged at once, not after max-redirects.
TEST(ClassifyChainTest, SelfRedirectIsALoopAtOnce) {
  EXPECT_EQ(Follow({Moved(kA, kA)}), (Verdict{LoopPattern::kHopLimit, 1}));
  EXPECT_EQ(Follow({Moved(kC, kA), Moved(kA, kA)}).pattern, LoopPattern::kMovedMoved);
}

TEST(ClassifyChainTest, SelfAskIsCaughtWithinTwoHops) {
  Verdict v = Follow({Ask(kA, kA), Ask(kA, kA), Ask(kA, kA)});
  EXPECT_EQ(v.pattern, LoopPattern::kHopLimit);
  EXPECT_LE(v.at_hop, 2u);
}

// Distinct nodes, each pointing further: only the hop limit ends it, exactly past max-redirects.
TEST(ClassifyChainTest, ChainOfDistinctNodesStopsPastMaxRedirects) {
  for (int max = 1; max <= 16; ++max) {
    std::vector<HopChain::Hop> hops;
    for (uint16_t n = 0; n < 20; ++n) hops.push_back(Moved(n, n + 1));
    EXPECT_EQ(Follow(hops, max), (Verdict{LoopPattern::kHopLimit, static_cast<size_t>(max) + 1}))
        << "max-redirects " << max;
  }
}

// A long chain that looks healthy hop by hop (every hop a new node, MOVEDs and ASKs mixed) is
// followed up to max-redirects and no further.
TEST(ClassifyChainTest, LongHealthyLookingChainIsFollowedUpToTheLimit) {
  std::vector<HopChain::Hop> hops;
  for (uint16_t n = 0; n < 16; ++n) hops.push_back(n % 2 ? Ask(n, n + 1) : Moved(n, n + 1));
  EXPECT_EQ(Follow(hops, 16), Verdict{});
  hops.push_back(Moved(16, 17));
  EXPECT_EQ(Follow(hops, 16), (Verdict{LoopPattern::kHopLimit, 17}));
}

// A revisit is caught even when the chain is still under max-redirects.
TEST(ClassifyChainTest, RevisitIsCaughtBeforeTheHopLimit) {
  Verdict v = Follow({Moved(kA, kB), Moved(kB, kC), Moved(kC, 3), Moved(3, kB)}, 16);
  EXPECT_EQ(v, (Verdict{LoopPattern::kMovedMoved, 4}));
}

// The chain never holds more hops than the largest max-redirects allows, and classification of a
// full chain still ends in a verdict.
TEST(ClassifyChainTest, FullChainStillClassifies) {
  HopChain chain;
  for (uint16_t n = 0; n < 40; ++n) chain.Add(Moved(n, n + 1));
  EXPECT_EQ(chain.size(), HopChain::kMaxHops);
  EXPECT_EQ(ClassifyChain(chain, 16), LoopPattern::kHopLimit);
}

TEST(LoopPatternTest, NamesAndMeanings) {
  EXPECT_EQ(LoopPatternName(LoopPattern::kAskMoved), "ask-moved");
  EXPECT_EQ(LoopPatternName(LoopPattern::kMovedMoved), "moved-moved");
  EXPECT_EQ(LoopPatternName(LoopPattern::kHopLimit), "hop-limit");
  EXPECT_EQ(LoopPatternName(LoopPattern::kNone), "none");
  EXPECT_EQ(LoopPatternMeaning(LoopPattern::kAskMoved), "migration incomplete");
  EXPECT_FALSE(LoopPatternMeaning(LoopPattern::kMovedMoved).empty());
  EXPECT_FALSE(LoopPatternMeaning(LoopPattern::kHopLimit).empty());
}

TEST(DescribeChainTest, NamesEveryHopWithItsKindAndTarget) {
  HopChain chain;
  chain.Add(Ask(kA, kB));
  chain.Add(Moved(kB, kA));
  EXPECT_EQ(DescribeChain(chain, Address), "ASK 10.0.0.2:7000 -> MOVED 10.0.0.1:7000");
  EXPECT_EQ(DescribeChain(HopChain(), Address), "");
}

TEST(ChainNodesTest, SourceFirstThenFirstSeenOrderWithoutRepeats) {
  HopChain chain;
  chain.Add(Moved(kC, kA));
  chain.Add(Ask(kA, kB));
  chain.Add(Moved(kB, kA));
  EXPECT_THAT(ChainNodes(chain), ElementsAre(kC, kA, kB));
  EXPECT_THAT(ChainNodes(HopChain()), IsEmpty());
}

// ---- LoopTracker --------------------------------------------------------------------------------

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kTtl = absl::Minutes(10);
constexpr absl::Duration kReportEvery = absl::Seconds(1);

std::vector<LoopNode> Nodes(uint16_t from, uint16_t to) {
  return {{Address(from), "id-" + std::to_string(from)}, {Address(to), "id-" + std::to_string(to)}};
}

bool Record(LoopTracker* t, uint16_t slot, absl::Time at, LoopPattern p = LoopPattern::kAskMoved,
            std::string chain = "ASK b -> MOVED a") {
  return t->Record(slot, p, Nodes(kA, kB), std::move(chain), at, kReportEvery);
}

std::vector<uint16_t> Slots(const std::vector<LoopRecord>& records) {
  std::vector<uint16_t> slots;
  for (const LoopRecord& r : records) slots.push_back(r.slot);
  std::sort(slots.begin(), slots.end());
  return slots;
}

TEST(LoopTrackerTest, CountsAndKeepsTheLatestDetails) {
  LoopTracker t(8, kTtl);
  Record(&t, 1234, kT0);
  t.Record(1234, LoopPattern::kMovedMoved, Nodes(kB, kC), "MOVED c -> MOVED b",
           kT0 + absl::Seconds(3), kReportEvery);
  std::vector<LoopRecord> snap = t.Snapshot(kT0 + absl::Seconds(4));
  ASSERT_EQ(snap.size(), 1u);
  const LoopRecord& r = snap[0];
  EXPECT_EQ(r.slot, 1234);
  EXPECT_EQ(r.count, 2u);
  EXPECT_EQ(r.pattern, LoopPattern::kMovedMoved);
  EXPECT_EQ(r.nodes, Nodes(kB, kC));
  EXPECT_EQ(r.first_seen, kT0);
  EXPECT_EQ(r.last_seen, kT0 + absl::Seconds(3));
  EXPECT_EQ(r.last_chain, "MOVED c -> MOVED b");
}

TEST(LoopTrackerTest, ReportsAtMostOncePerIntervalPerSlot) {
  LoopTracker t(8, kTtl);
  EXPECT_TRUE(Record(&t, 1, kT0));
  EXPECT_FALSE(Record(&t, 1, kT0 + absl::Milliseconds(10)));
  EXPECT_FALSE(Record(&t, 1, kT0 + absl::Milliseconds(999)));
  EXPECT_TRUE(Record(&t, 2, kT0 + absl::Milliseconds(999))) << "another slot has its own budget";
  EXPECT_TRUE(Record(&t, 1, kT0 + absl::Seconds(1)));
  EXPECT_FALSE(Record(&t, 1, kT0 + absl::Milliseconds(1500)));
  // A storm: 10,000 loops in one second give one report; every loop is still counted.
  int reports = 0;
  for (int i = 0; i < 10000; ++i) reports += Record(&t, 3, kT0 + absl::Microseconds(i * 100));
  EXPECT_EQ(reports, 1);
  std::vector<LoopRecord> snap = t.Snapshot(kT0 + absl::Seconds(2));
  auto it = std::find_if(snap.begin(), snap.end(), [](const LoopRecord& r) { return r.slot == 3; });
  ASSERT_NE(it, snap.end());
  EXPECT_EQ(it->count, 10000u);
}

TEST(LoopTrackerTest, BoundedInSlotsEvictingTheLeastRecentlySeen) {
  LoopTracker t(3, kTtl);
  Record(&t, 10, kT0);
  Record(&t, 20, kT0 + absl::Seconds(1));
  Record(&t, 30, kT0 + absl::Seconds(2));
  Record(&t, 10, kT0 + absl::Seconds(3));  // 10 is now the most recent, 20 the least
  Record(&t, 40, kT0 + absl::Seconds(4));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + absl::Seconds(5))), ElementsAre(10, 30, 40));
  Record(&t, 50, kT0 + absl::Seconds(6));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + absl::Seconds(7))), ElementsAre(10, 40, 50));
  // Many distinct slots never grow it past its bound.
  for (uint16_t s = 0; s < 1000; ++s) Record(&t, s, kT0 + absl::Seconds(10) + absl::Milliseconds(s));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + absl::Seconds(20))), ElementsAre(997, 998, 999));
}

TEST(LoopTrackerTest, RecordsExpireAfterTheTtl) {
  LoopTracker t(8, kTtl);
  Record(&t, 1, kT0);
  Record(&t, 2, kT0 + absl::Minutes(5));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + kTtl)), ElementsAre(1, 2));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + kTtl + absl::Seconds(1))), ElementsAre(2));
  EXPECT_THAT(Slots(t.Snapshot(kT0 + absl::Minutes(16))), IsEmpty());
}

// An expired record is gone: a loop on that slot much later starts a new record instead of
// reviving the old count and first_seen.
TEST(LoopTrackerTest, ALoopAfterExpiryStartsAFreshRecord) {
  LoopTracker t(8, kTtl);
  Record(&t, 1, kT0);
  Record(&t, 1, kT0 + absl::Seconds(1));
  absl::Time later = kT0 + absl::Hours(3);
  EXPECT_TRUE(Record(&t, 1, later));
  std::vector<LoopRecord> snap = t.Snapshot(later);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].count, 1u);
  EXPECT_EQ(snap[0].first_seen, later);
}

// ---- MergeLoopRecords ---------------------------------------------------------------------------

LoopRecord Rec(uint16_t slot, uint64_t count, absl::Time first, absl::Time last,
               LoopPattern p = LoopPattern::kAskMoved, std::string chain = "") {
  LoopRecord r;
  r.slot = slot;
  r.pattern = p;
  r.count = count;
  r.nodes = Nodes(kA, kB);
  r.first_seen = first;
  r.last_seen = last;
  r.last_chain = std::move(chain);
  return r;
}

TEST(MergeLoopRecordsTest, SumsCountsWidensTimesAndTakesDetailsFromTheNewest) {
  absl::Time t = kT0;
  LoopRecord older = Rec(7, 3, t + absl::Seconds(1), t + absl::Seconds(5), LoopPattern::kAskMoved,
                         "ASK b -> MOVED a");
  LoopRecord newer = Rec(7, 4, t + absl::Seconds(2), t + absl::Seconds(9), LoopPattern::kMovedMoved,
                         "MOVED b -> MOVED a");
  newer.nodes = Nodes(kB, kC);
  for (bool newer_first : {false, true}) {
    std::vector<std::vector<LoopRecord>> workers = {{older}, {}, {newer}};
    if (newer_first) std::swap(workers[0], workers[2]);
    std::vector<LoopRecord> merged = MergeLoopRecords(workers);
    ASSERT_EQ(merged.size(), 1u);
    EXPECT_EQ(merged[0].count, 7u);
    EXPECT_EQ(merged[0].first_seen, t + absl::Seconds(1));
    EXPECT_EQ(merged[0].last_seen, t + absl::Seconds(9));
    EXPECT_EQ(merged[0].pattern, LoopPattern::kMovedMoved);
    EXPECT_EQ(merged[0].nodes, Nodes(kB, kC));
    EXPECT_EQ(merged[0].last_chain, "MOVED b -> MOVED a");
  }
}

TEST(MergeLoopRecordsTest, NewestFirstTiesBySlot) {
  std::vector<std::vector<LoopRecord>> workers = {
      {Rec(5, 1, kT0, kT0 + absl::Seconds(1)), Rec(9, 1, kT0, kT0 + absl::Seconds(3))},
      {Rec(2, 1, kT0, kT0 + absl::Seconds(3)), Rec(5, 1, kT0, kT0 + absl::Seconds(2))}};
  std::vector<LoopRecord> merged = MergeLoopRecords(workers);
  std::vector<uint16_t> order;
  for (const LoopRecord& r : merged) order.push_back(r.slot);
  EXPECT_THAT(order, ElementsAre(2, 9, 5));
  EXPECT_EQ(merged[2].count, 2u);
  EXPECT_EQ(merged[2].last_seen, kT0 + absl::Seconds(2));
  EXPECT_THAT(MergeLoopRecords({}), IsEmpty());
  EXPECT_THAT(MergeLoopRecords({{}, {}}), IsEmpty());
}

// Real trackers on several threads (one per worker), merged as the admin endpoint does.
TEST(MergeLoopRecordsTest, TrackersOfSeveralWorkersAddUp) {
  constexpr int kWorkers = 4;
  constexpr int kLoops = 500;
  std::vector<std::unique_ptr<LoopTracker>> trackers;
  for (int i = 0; i < kWorkers; ++i) trackers.push_back(std::make_unique<LoopTracker>(16, kTtl));
  std::vector<std::thread> threads;
  for (int i = 0; i < kWorkers; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < kLoops; ++n) Record(trackers[i].get(), n % 2 ? 100 : 200, kT0 + absl::Milliseconds(n));
    });
  }
  std::vector<std::vector<LoopRecord>> during;
  for (int i = 0; i < kWorkers; ++i) during.push_back(trackers[i]->Snapshot(kT0));  // concurrent reads
  for (auto& th : threads) th.join();
  std::vector<std::vector<LoopRecord>> snaps;
  for (auto& t : trackers) snaps.push_back(t->Snapshot(kT0 + absl::Seconds(1)));
  std::vector<LoopRecord> merged = MergeLoopRecords(snaps);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0].count + merged[1].count, static_cast<uint64_t>(kWorkers * kLoops));
  EXPECT_EQ(merged[0].slot, 100) << "slot 100 was seen last (odd n)";
  EXPECT_EQ(merged[0].count, static_cast<uint64_t>(kWorkers * kLoops / 2));
}

// ---- LoopReportQueue ----------------------------------------------------------------------------

LoopReport Report(uint16_t slot) { return LoopReport{slot, LoopPattern::kAskMoved, Nodes(kA, kB), kT0}; }

TEST(LoopReportQueueTest, BoundedDropsAndCountsWhenFull) {
  LoopReportQueue q(3);
  int notified = 0;
  q.SetNotify([&] { ++notified; });
  for (uint16_t s = 1; s <= 5; ++s) EXPECT_EQ(q.Push(Report(s)), s <= 3) << s;
  EXPECT_EQ(q.pushed(), 3u);
  EXPECT_EQ(q.dropped(), 2u);
  EXPECT_EQ(notified, 3) << "a dropped report wakes nobody";
  std::vector<LoopReport> drained = q.Drain();
  ASSERT_EQ(drained.size(), 3u);
  EXPECT_EQ(drained[0].slot, 1);
  EXPECT_EQ(drained[2].slot, 3);
  EXPECT_EQ(drained[0].nodes, Nodes(kA, kB));
  EXPECT_THAT(q.Drain(), IsEmpty());
  EXPECT_TRUE(q.Push(Report(6))) << "draining frees the capacity";
  EXPECT_EQ(q.pushed(), 4u);
  EXPECT_EQ(q.dropped(), 2u);
}

TEST(LoopReportQueueTest, ManyProducersNeverBlockAndEveryReportIsAccountedFor) {
  constexpr int kProducers = 4;
  constexpr int kEach = 2000;
  LoopReportQueue q(64);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> drained{0};
  std::thread consumer([&] {
    while (!done.load()) drained += q.Drain().size();
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) q.Push(Report(static_cast<uint16_t>(i)));
    });
  }
  for (auto& t : producers) t.join();
  done = true;
  consumer.join();
  drained += q.Drain().size();
  EXPECT_EQ(q.pushed() + q.dropped(), static_cast<uint64_t>(kProducers * kEach));
  EXPECT_EQ(drained.load(), q.pushed());
}

}  // namespace
}  // namespace slotpilot::proxy
