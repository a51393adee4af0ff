// The throttle's arithmetic on a fake clock: token bucket, rate meter, budgets and their split
// across workers, report merging.
#include "proxy/throttle.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <vector>

namespace slotpilot::proxy {
namespace {

TEST(TokenBucketTest, StartsFullThenRefillsAtItsRate) {
  TokenBucket b;
  b.Configure(/*rate_per_s=*/100, /*burst=*/5, /*now_ms=*/1000);
  b.Reset(1000);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.TryTake(1000)) << i;
  EXPECT_FALSE(b.TryTake(1000));
  EXPECT_FALSE(b.TryTake(1009));  // 0.9 tokens
  EXPECT_TRUE(b.TryTake(1010));   // 1.0
  EXPECT_FALSE(b.TryTake(1010));
}

TEST(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  TokenBucket b;
  b.Configure(1000, 3, 0);
  b.Reset(0);
  EXPECT_DOUBLE_EQ(b.tokens(60000), 3);
  int taken = 0;
  while (b.TryTake(60000)) ++taken;
  EXPECT_EQ(taken, 3);
}

TEST(TokenBucketTest, AdmitsTheRateOverALongRun) {
  TokenBucket b;
  b.Configure(250, 1, 0);
  b.Reset(0);
  int taken = 0;
  for (uint64_t now = 0; now <= 10000; ++now) {  // a caller trying every millisecond for 10 s
    while (b.TryTake(now)) ++taken;
  }
  EXPECT_NEAR(taken, 2501, 2);  // 250/s for 10 s plus the initial burst
}

TEST(TokenBucketTest, ClockGoingBackwardsAddsNothing) {
  TokenBucket b;
  b.Configure(1000, 1, 500);
  b.Reset(500);
  EXPECT_TRUE(b.TryTake(500));
  EXPECT_FALSE(b.TryTake(400));
  EXPECT_FALSE(b.TryTake(500));
  EXPECT_TRUE(b.TryTake(501));
}

TEST(TokenBucketTest, ReconfigureKeepsEarnedTokensWithinTheNewBurst) {
  TokenBucket b;
  b.Configure(10, 10, 0);
  b.Reset(0);
  b.Configure(10, 2, 0);
  EXPECT_DOUBLE_EQ(b.tokens(0), 2);
  EXPECT_EQ(b.rate(), 10);
}

TEST(RateMeterTest, MeasuresRequestsPerSecondAndAverages) {
  RateMeter m(/*tau_ms=*/5000);
  m.Tick(0);  // starts the first interval
  m.Add(1000);
  m.Tick(1000);
  EXPECT_DOUBLE_EQ(m.last(), 1000);
  EXPECT_DOUBLE_EQ(m.average(), 1000);  // the first interval primes the average
  m.Add(2000);
  m.Tick(2000);
  EXPECT_DOUBLE_EQ(m.last(), 2000);
  EXPECT_GT(m.average(), 1000);
  EXPECT_LT(m.average(), 2000);
}

TEST(RateMeterTest, HoldAverageKeepsThePreThrottleRate) {
  RateMeter m;
  m.Tick(0);
  m.Add(800);
  m.Tick(1000);
  m.Add(100);
  m.Tick(2000, /*hold_average=*/true);
  EXPECT_DOUBLE_EQ(m.last(), 100);
  EXPECT_DOUBLE_EQ(m.average(), 800);
}

TEST(ThrottleBudgetTest, RateIsSplitEvenlyAcrossWorkers) {
  ThrottleOptions o;
  o.rate = 3000;
  o.workers = 4;
  EXPECT_DOUBLE_EQ(WorkerBudget(o, /*baseline=*/123456), 750);
  o.burst_ms = 100;
  EXPECT_DOUBLE_EQ(BurstFor(o, 750), 75);
  o.burst_ms = 0;
  EXPECT_DOUBLE_EQ(BurstFor(o, 750), 1);  // always at least one request
}

TEST(ThrottleBudgetTest, FractionOfTheWorkersOwnBaselineWithAFloor) {
  ThrottleOptions o;
  o.rate = 0;
  o.fraction = 0.25;
  o.workers = 2;
  o.min_budget = 50;
  EXPECT_DOUBLE_EQ(WorkerBudget(o, 4000), 1000);
  EXPECT_DOUBLE_EQ(WorkerBudget(o, 0), 25);  // an idle node keeps min_budget across the proxy
}

// N workers, each with its own bucket holding budget/N, driven by one fake clock with demand
// far above the budget: together they admit the proxy-wide budget, without sharing anything.
TEST(ThrottleBudgetTest, PerWorkerBucketsSumToTheBudget) {
  for (int workers : {1, 2, 3, 8}) {
    ThrottleOptions o;
    o.rate = 1200;
    o.workers = workers;
    o.burst_ms = 50;
    std::vector<TokenBucket> buckets(workers);
    for (TokenBucket& b : buckets) {
      double share = WorkerBudget(o, 0);
      b.Configure(share, BurstFor(o, share), 0);
      b.Reset(0);
    }
    int admitted = 0;
    for (uint64_t now = 0; now <= 5000; now += 2) {  // 2 ms release ticks for 5 s
      for (TokenBucket& b : buckets) {
        while (b.TryTake(now)) ++admitted;
      }
    }
    double expected = 1200 * 5.0 + 1200 * 0.05;  // rate x time + the initial bursts
    EXPECT_NEAR(admitted, expected, workers + 1) << workers << " workers";
  }
}

TEST(ThrottleReportTest, MergesWorkersPerNode) {
  std::vector<std::vector<ThrottleNodeReport>> per_worker = {
      {{"127.0.0.1:7001", {5, 9}, "ask", 100, 90, 3}},
      {{"127.0.0.1:7001", {9, 2}, "watcher", 100, 110, 1}, {"127.0.0.1:7002", {7}, "watcher", 50, 10, 0}}};
  std::vector<ThrottleNodeReport> merged = MergeThrottleReports(per_worker);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0].address, "127.0.0.1:7001");
  EXPECT_DOUBLE_EQ(merged[0].budget, 200);
  EXPECT_DOUBLE_EQ(merged[0].rate, 200);
  EXPECT_EQ(merged[0].waiting, 4u);
  EXPECT_EQ(merged[0].evidence, "watcher");
  EXPECT_EQ(merged[0].slots, (std::vector<uint16_t>{2, 5, 9}));
  EXPECT_EQ(merged[1].address, "127.0.0.1:7002");
}

TEST(ThrottleReportTest, AddsThrottledNodesToTheMigrationsJson) {
  std::string out = AddThrottleJson("{\"mode\":\"observe\",\"migrations\":[]}\n",
                                    {{"127.0.0.1:7001", {1234}, "watcher", 500, 498.04, 2}});
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["mode"], "observe");
  ASSERT_EQ(j["throttled_nodes"].size(), 1u);
  EXPECT_EQ(j["throttled_nodes"][0]["node"], "127.0.0.1:7001");
  EXPECT_EQ(j["throttled_nodes"][0]["slots"][0], 1234);
  EXPECT_EQ(j["throttled_nodes"][0]["budget_ops"], 500);
  EXPECT_DOUBLE_EQ(j["throttled_nodes"][0]["rate_ops"].get<double>(), 498);
}

}  // namespace
}  // namespace slotpilot::proxy
