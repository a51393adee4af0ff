// The Watcher against a live 3-master cluster: observe mode reports the right verdict and plan and
// never touches the cluster; finish mode and manual actions go through the SlotRepairer; loop
// evidence wakes a re-check; a live slow reshard is judged progressing, never stuck.
#include "migration/watcher.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "protocol/strings.h"
#include "spdlog/spdlog.h"
#include "tests/support/test_cluster.h"

extern char** environ;

namespace slotpilot::migration {
namespace {

using ::slotpilot::testing::TestCluster;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Records every call; answers with `answer` (default: deferred).
class FakeRepairer : public SlotRepairer {
 public:
  struct Call {
    uint16_t slot;
    Signature signature;
    RepairKind kind;
  };
  RepairOutcome Repair(uint16_t slot, const SlotAssessment& plan, RepairKind kind) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(Call{slot, plan.signature, kind});
    }
    if (answer) return answer(slot, plan, kind);
    RepairOutcome out;
    out.result = RepairOutcome::Result::kDeferred;
    out.summary = "fake: deferred";
    return out;
  }
  std::vector<Call> calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::function<RepairOutcome(uint16_t, const SlotAssessment&, RepairKind)> answer;

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
};

class WatcherLive : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The audit trail is info; keep test output short unless SLOTPILOT_TEST_AUDIT is set.
    if (getenv("SLOTPILOT_TEST_AUDIT") == nullptr) spdlog::set_level(spdlog::level::warn);
    auto c = TestCluster::Start();
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    spdlog::set_level(spdlog::level::info);
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }
  TestCluster& c() { return *cluster_; }

  WatcherOptions Options(WatcherMode mode) {
    WatcherOptions o;
    o.mode = mode;
    o.view.seeds = c().Seeds();
    o.view.client.connect_timeout = milliseconds(500);
    o.view.client.command_timeout = milliseconds(1000);
    o.detector.stall_timeout = absl::Milliseconds(1500);
    o.detector.progress_hold = absl::Milliseconds(600);
    o.detector.self_id = "test-sidecar";
    o.slow_interval = absl::Milliseconds(200);
    o.fast_interval = absl::Milliseconds(150);
    o.min_poll_gap = absl::Milliseconds(50);
    o.retry_backoff = absl::Seconds(30);
    return o;
  }
  // Waits until the published status satisfies `pred` for `slot`.
  static bool WaitForSlot(Watcher& w, uint16_t slot, std::chrono::milliseconds timeout,
                          const std::function<bool(const SlotStatus&)>& pred) {
    return TestCluster::WaitUntil(
        [&] {
          auto status = w.Status();
          const SlotStatus* s = status->Find(slot);
          return s != nullptr && pred(*s);
        },
        timeout, milliseconds(20));
  }

  static TestCluster* cluster_;
};
TestCluster* WatcherLive::cluster_ = nullptr;

// Node 0 (A) owns 0-5460, node 1 (B) 5461-10922, node 2 (C) the rest.

TEST_F(WatcherLive, ObserveReportsVerdictAndPlanAndNeverTouchesTheCluster) {
  const uint16_t slot = 2000;
  ASSERT_TRUE(c().FillSlot(slot, 5).ok());
  ASSERT_TRUE(c().SetMigrating(0, slot, 1).ok());  // S1: half-open source
  auto before = c().StableClusterText();
  ASSERT_TRUE(before.ok()) << before.status();

  FakeRepairer repairer;
  Watcher w(Options(WatcherMode::kObserve), &repairer);
  w.Start();
  const bool stuck =
      WaitForSlot(w, slot, seconds(15), [](const SlotStatus& s) { return s.verdict == "stuck"; });
  auto status = w.Status();
  w.Stop();
  ASSERT_TRUE(stuck) << "never judged stuck";

  const SlotStatus* s = status->Find(slot);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->signature, "half-open-source");
  EXPECT_EQ(s->scenario, "S1");
  EXPECT_EQ(s->plan_kind, "close");
  EXPECT_EQ(s->source, c().address(0));
  EXPECT_EQ(s->source_id, c().id(0));
  EXPECT_EQ(s->target, c().address(1));
  EXPECT_EQ(s->keys_source, 5);
  EXPECT_EQ(s->keys_target, 0);
  EXPECT_GE(s->stuck_seconds, 1.5);
  EXPECT_EQ(s->action, StrCat("would run: 1) CLUSTER SETSLOT 2000 STABLE on ", c().address(0),
                              " 2) verify every master's view says ", c().address(0),
                              " owns slot 2000, no open marker remains and the key counts add up"));
  ASSERT_FALSE(s->plan.empty());
  EXPECT_EQ(s->plan[0], StrCat("CLUSTER SETSLOT 2000 STABLE on ", c().address(0)));
  EXPECT_EQ(s->repair_generation, 0u);
  // Cluster health from the same polls.
  EXPECT_TRUE(status->cluster_healthy) << status->unhealthy_reason;
  EXPECT_EQ(status->masters.size(), 3u);
  for (const MasterHealth& m : status->masters) {
    EXPECT_TRUE(m.reachable);
    EXPECT_EQ(m.cluster_state, "ok");
    EXPECT_EQ(m.slots_assigned, 16384);
    EXPECT_EQ(m.flags_seen_by_others, "");
  }
  EXPECT_TRUE(status->flagged_nodes.empty());
  ASSERT_EQ(status->open_slots.size(), 1u);
  EXPECT_EQ(status->open_slots[0].slot, slot);
  EXPECT_GT(status->open_slots[0].age_seconds, 1.0);
  auto transitions = [&](const std::string& v) {
    auto it = status->counters.verdicts.find(v);
    return it == status->counters.verdicts.end() ? 0u : it->second;
  };
  EXPECT_GE(transitions("observing"), 1u);
  EXPECT_GE(transitions("stuck"), 1u);
  EXPECT_GT(status->counters.polls, 3u);
  EXPECT_EQ(status->counters.actions_started, 0u);
  EXPECT_EQ(status->mode, WatcherMode::kObserve);

  EXPECT_TRUE(repairer.calls().empty());
  auto after = c().StableClusterText();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*before, *after) << "observe mode changed the cluster";
  ASSERT_TRUE(c().ResetSlot(slot, 0).ok());
}

TEST_F(WatcherLive, FinishHandsTheStuckSlotToTheRepairerAndBumpsItsGeneration) {
  const uint16_t slot = 2001;
  ASSERT_TRUE(c().SetImporting(1, slot, 0).ok());  // S2: half-open target
  FakeRepairer repairer;
  repairer.answer = [&](uint16_t s, const SlotAssessment& plan, RepairKind) {
    RepairOutcome out;
    auto b = c().Connect(1);  // watcher thread: its own connection
    EXPECT_TRUE(b.ok());
    if (b.ok()) {
      auto r = (*b)->Command({"CLUSTER", "SETSLOT", std::to_string(s), "STABLE"});
      EXPECT_TRUE(r.ok() && !r->is_error());
    }
    out.result = RepairOutcome::Result::kDone;
    out.mutated = true;
    out.summary = StrCat("closed ", plan.target.endpoint.ToString());
    return out;
  };
  std::vector<std::shared_ptr<const WatcherStatus>> published;
  std::mutex mu;
  WatcherOptions o = Options(WatcherMode::kFinish);
  o.on_publish = [&](const std::shared_ptr<const WatcherStatus>& s) {
    std::lock_guard<std::mutex> lock(mu);
    published.push_back(s);
  };
  Watcher w(o, &repairer);
  w.Start();
  const bool healed = WaitForSlot(w, slot, seconds(15),
                                  [](const SlotStatus& s) { return s.verdict == "healthy-again"; });
  w.Stop();
  ASSERT_TRUE(healed);
  auto calls = repairer.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].slot, slot);
  EXPECT_EQ(calls[0].signature, Signature::kHalfOpenTarget);
  EXPECT_EQ(calls[0].kind, RepairKind::kFinish);
  auto status = w.Status();
  EXPECT_EQ(status->repair_generation.at(slot), 1u);
  EXPECT_EQ(status->repairs_completed, 1u);
  EXPECT_EQ(status->counters.actions_started, 1u);
  EXPECT_EQ(status->counters.actions_succeeded, 1u);
  const SlotStatus* s = status->Find(slot);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->repair_generation, 1u);
  EXPECT_THAT(s->action, StartsWith("finish done: closed " + c().address(1)));
  // While the repair ran, the status said so.
  std::lock_guard<std::mutex> lock(mu);
  bool saw_running = false;
  for (const auto& p : published) {
    const SlotStatus* x = p->Find(slot);
    if (x != nullptr && x->action.rfind("running finish: 1) CLUSTER SETSLOT 2001 STABLE", 0) == 0) {
      saw_running = true;
      EXPECT_EQ(x->lease_holder, "test-sidecar");
    }
  }
  EXPECT_TRUE(saw_running);
}

TEST_F(WatcherLive, ManualActionsRunInObserveModeAndAreValidated) {
  const uint16_t reshard = 2002;
  const uint16_t half_open = 2003;
  ASSERT_TRUE(c().FillSlot(reshard, 6).ok());
  ASSERT_TRUE(c().SetImporting(1, reshard, 0).ok());
  ASSERT_TRUE(c().SetMigrating(0, reshard, 1).ok());
  ASSERT_TRUE(c().MigrateKeys(0, 1, reshard, 2).ok());  // S3
  ASSERT_TRUE(c().SetMigrating(0, half_open, 1).ok());  // S1
  FakeRepairer repairer;
  Watcher w(Options(WatcherMode::kObserve), &repairer);
  w.RunOnce();  // driven by hand: no thread
  EXPECT_TRUE(absl::IsNotFound(w.RequestAction(3000, RepairKind::kFinish)));
  EXPECT_TRUE(absl::IsInvalidArgument(w.RequestAction(20000, RepairKind::kFinish)));
  EXPECT_TRUE(absl::IsFailedPrecondition(w.RequestAction(half_open, RepairKind::kRollback)));
  ASSERT_TRUE(w.RequestAction(reshard, RepairKind::kRollback).ok());
  ASSERT_TRUE(w.RequestAction(half_open, RepairKind::kFinish).ok());
  w.RunOnce();
  w.RunOnce();
  auto calls = repairer.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].slot, reshard);
  EXPECT_EQ(calls[0].kind, RepairKind::kRollback);
  EXPECT_EQ(calls[0].signature, Signature::kInterruptedReshard);
  EXPECT_EQ(calls[1].slot, half_open);
  EXPECT_EQ(calls[1].kind, RepairKind::kFinish);
  auto status = w.Status();
  EXPECT_EQ(status->counters.actions_started, 2u);
  EXPECT_EQ(status->counters.actions_deferred, 2u);
  EXPECT_EQ(status->counters.actions_rejected, 3u);
  EXPECT_THAT(status->Find(reshard)->action, StartsWith("rollback deferred: fake: deferred"));
  EXPECT_FALSE(status->Find(reshard)->rollback.empty());

  w.SetMode(WatcherMode::kOff);
  EXPECT_TRUE(absl::IsFailedPrecondition(w.RequestAction(reshard, RepairKind::kFinish)));
  w.RunOnce();
  EXPECT_EQ(w.Status()->mode, WatcherMode::kOff);
  EXPECT_TRUE(w.Status()->slots.empty());
  ASSERT_TRUE(c().ResetSlot(reshard, 0).ok());
  ASSERT_TRUE(c().ResetSlot(half_open, 0).ok());
}

TEST_F(WatcherLive, LoopEvidenceWakesAFastRecheck) {
  WatcherOptions o = Options(WatcherMode::kObserve);
  o.slow_interval = absl::Seconds(60);
  o.fast_interval = absl::Seconds(60);
  Watcher w(o);
  w.Start();
  ASSERT_TRUE(TestCluster::WaitUntil([&] { return w.Status()->poll_count >= 1; }, seconds(5)));
  const uint64_t polls = w.Status()->poll_count;
  const auto start = std::chrono::steady_clock::now();
  w.OnLoopEvidence(3001);
  const bool seen = WaitForSlot(w, 3001, seconds(5), [](const SlotStatus&) { return true; });
  const auto took = std::chrono::steady_clock::now() - start;
  auto status = w.Status();
  w.Stop();
  ASSERT_TRUE(seen);
  EXPECT_LT(took, seconds(3));
  EXPECT_GT(status->poll_count, polls);
  const SlotStatus* s = status->Find(3001);
  EXPECT_EQ(s->verdict, "healthy");  // evidence, not a verdict
  EXPECT_NE(s->last_loop_report, absl::InfinitePast());
  EXPECT_EQ(status->counters.loop_reports, 1u);
}

TEST_F(WatcherLive, ModeOffDoesNotPollUntilSwitchedOn) {
  Watcher w(Options(WatcherMode::kOff));
  w.Start();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(w.Status()->poll_count, 0u);
  EXPECT_EQ(w.Status()->mode, WatcherMode::kOff);
  w.SetMode(WatcherMode::kObserve);
  EXPECT_TRUE(TestCluster::WaitUntil([&] { return w.Status()->poll_count >= 1; }, seconds(5)));
  w.Stop();
}

// A reshard of one slot driven by the test, a few keys at a time with pauses shorter than the
// stall timeout: the watcher (in finish mode!) must see it progressing and never act on it.
TEST_F(WatcherLive, SlowReshardIsProgressingNeverStuck) {
  const uint16_t slot = 2004;
  ASSERT_TRUE(c().FillSlot(slot, 36).ok());
  FakeRepairer repairer;
  std::mutex mu;
  std::set<std::string> verdicts;
  WatcherOptions o = Options(WatcherMode::kFinish);
  o.on_publish = [&](const std::shared_ptr<const WatcherStatus>& s) {
    if (const SlotStatus* x = s->Find(slot)) {
      std::lock_guard<std::mutex> lock(mu);
      verdicts.insert(x->verdict);
    }
  };
  Watcher w(o, &repairer);
  w.Start();
  std::atomic<bool> failed{false};
  std::thread resharder([&] {
    auto a = c().Connect(0);
    auto b = c().Connect(1);
    auto third = c().Connect(2);
    if (!a.ok() || !b.ok() || !third.ok()) return failed.store(true);
    const std::string s = std::to_string(slot);
    auto ok = [](const absl::StatusOr<protocol::RespValue>& r) { return r.ok() && !r->is_error(); };
    if (!ok((*b)->Command({"CLUSTER", "SETSLOT", s, "IMPORTING", c().id(0)})) ||
        !ok((*a)->Command({"CLUSTER", "SETSLOT", s, "MIGRATING", c().id(1)}))) {
      return failed.store(true);
    }
    for (int round = 0; round < 40; ++round) {
      auto moved = c().MigrateKeys(0, 1, slot, 4, a->get());
      if (!moved.ok()) return failed.store(true);
      if (*moved == 0) break;
      std::this_thread::sleep_for(milliseconds(300));  // < progress_hold < stall_timeout
    }
    for (auto* n : {b->get(), a->get(), third->get()}) {
      if (!ok(n->Command({"CLUSTER", "SETSLOT", s, "NODE", c().id(1)}))) failed.store(true);
    }
  });
  resharder.join();
  ASSERT_FALSE(failed.load());
  const bool settled = WaitForSlot(
      w, slot, seconds(10), [](const SlotStatus& s) { return s.verdict == "healthy-again"; });
  w.Stop();
  EXPECT_TRUE(settled);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(verdicts.count("progressing")) << ::testing::PrintToString(verdicts);
  EXPECT_FALSE(verdicts.count("stuck")) << ::testing::PrintToString(verdicts);
  EXPECT_TRUE(repairer.calls().empty());
  EXPECT_EQ(*c().CountKeys(1, slot), 36);
}

// The real tool: `redis-cli --cluster reshard` of one slot, one key per MIGRATE (a few seconds
// for 20k keys), watched with a stall timeout far below the reshard's duration.
TEST_F(WatcherLive, RedisCliReshardIsNeverJudgedStuck) {
  const uint16_t slot = 0;  // reshard takes the source's first slot
  constexpr int kKeys = 8000;
  ASSERT_TRUE(c().FillSlot(slot, kKeys, 32).ok());
  FakeRepairer repairer;
  std::mutex mu;
  std::set<std::string> verdicts;
  WatcherOptions o = Options(WatcherMode::kFinish);
  o.fast_interval = absl::Milliseconds(50);
  o.min_poll_gap = absl::Milliseconds(20);
  o.detector.stall_timeout = absl::Milliseconds(800);
  o.on_publish = [&](const std::shared_ptr<const WatcherStatus>& s) {
    if (const SlotStatus* x = s->Find(slot)) {
      std::lock_guard<std::mutex> lock(mu);
      verdicts.insert(x->verdict);
    }
  };
  Watcher w(o, &repairer);
  w.Start();
  std::vector<std::string> args = {
      "redis-cli",     "--cluster",          "reshard", c().address(0),    "--cluster-from",
      c().id(0),       "--cluster-to",       c().id(1), "--cluster-slots", "1",
      "--cluster-yes", "--cluster-pipeline", "1"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawnp(&pid, "redis-cli", &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  int wstatus = 0;
  const bool exited =
      TestCluster::WaitUntil([&] { return waitpid(pid, &wstatus, WNOHANG) == pid; }, seconds(30));
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &wstatus, 0);
  }
  ASSERT_TRUE(exited) << "redis-cli reshard did not finish";
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  ASSERT_TRUE(c().WaitForAgreement(seconds(10)).ok());
  std::this_thread::sleep_for(milliseconds(300));
  w.Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(verdicts.count("progressing")) << ::testing::PrintToString(verdicts);
  EXPECT_FALSE(verdicts.count("stuck")) << ::testing::PrintToString(verdicts);
  EXPECT_TRUE(repairer.calls().empty());
  EXPECT_EQ(*c().CountKeys(1, slot), kKeys);
  EXPECT_EQ(*c().OwnerOf(slot, 2), 1);
}

}  // namespace
}  // namespace slotpilot::migration
