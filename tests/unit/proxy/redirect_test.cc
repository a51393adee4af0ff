// Redirects and retryable cluster errors through the in-process proxy: MOVED, ASK, TRYAGAIN,
// CLUSTERDOWN, LOADING, MASTERDOWN, redirect loops and odd MOVED endpoints. Fake nodes script the
// cluster's answers; their command logs show what the proxy actually sent where.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/proxy/proxy_harness.h"

namespace slotpilot::testing {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

// A owns slots 0-8191, B 8192-16383; key_ lives on A (away from the range edges).
class RedirectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = StartFake();
    b_ = StartFake();
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
    SetLayout(nodes(), {{0, 8191, *a_}, {8192, 16383, *b_}});
    key_ = KeyInSlots(100, 8000);
    slot_ = protocol::KeyHashSlot(key_);
  }

  void StartProxy(const std::function<void(proxy::ProxyOptions&)>& tweak = nullptr) {
    proxy::ProxyOptions o = FastOptions(nodes());
    if (tweak) tweak(o);
    proxy_ = ProxyUnderTest::Start(o);
    ASSERT_NE(proxy_, nullptr);
    client_ = proxy_->Connect();
    ASSERT_NE(client_, nullptr);
  }

  std::vector<FakeRedisNode*> nodes() const { return {a_.get(), b_.get()}; }

  size_t ClusterSlotsQueries() const {
    size_t n = 0;
    for (FakeRedisNode* f : nodes()) n += f->CountCommands("CLUSTER", "SLOTS");
    return n;
  }

  std::string Moved(const FakeRedisNode& to) const { return StrCat("MOVED ", slot_, " ", to.address()); }
  std::string Ask(const FakeRedisNode& to) const { return StrCat("ASK ", slot_, " ", to.address()); }

  std::unique_ptr<FakeRedisNode> a_;
  std::unique_ptr<FakeRedisNode> b_;
  std::unique_ptr<ProxyUnderTest> proxy_;
  std::unique_ptr<migration::RedisClient> client_;
  std::string key_;
  int slot_ = 0;
};

TEST_F(RedirectTest, MovedIsResentToTheNamedNodeAndLearnedForTheSlot) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  // The slot has moved to B: A answers MOVED, and the cluster's layout says so.
  std::string moved = Moved(*b_);
  a_->SetHandler([moved](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(moved) : FakeAction::Default();
  });
  SetLayout(nodes(), {{0, slot_ - 1, *a_}, {slot_, slot_, *b_}, {slot_ + 1, 8191, *a_}, {8192, 16383, *b_}});
  b_->Set(key_, "from-b");
  size_t refreshes_before = ClusterSlotsQueries();

  RespValue first = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(first.type, ReplyType::kBulk) << protocol::DebugString(first);
  EXPECT_EQ(first.str, "from-b");
  EXPECT_EQ(a_->CountCommands("GET"), 1u);
  EXPECT_EQ(b_->CountCommands("GET"), 1u);

  // The next request for the slot goes straight to B: no second MOVED.
  EXPECT_EQ(Cmd(client_.get(), {"GET", key_}).str, "from-b");
  EXPECT_EQ(a_->CountCommands("GET"), 1u);
  EXPECT_EQ(b_->CountCommands("GET"), 2u);

  // The MOVED asked for a topology refresh, which installs the new layout.
  EXPECT_TRUE(WaitUntil([&] { return ClusterSlotsQueries() > refreshes_before; }));
  EXPECT_TRUE(WaitUntil([&] { return proxy_->TopologyVersion() == 2; }));
  EXPECT_EQ(Cmd(client_.get(), {"GET", key_}).str, "from-b");
  EXPECT_EQ(a_->CountCommands("GET"), 1u);
}

TEST_F(RedirectTest, AskSendsAskingThenTheCommandOnOneConnectionAndKeepsTheSlotMap) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string ask = Ask(*b_);
  std::string back = Moved(*a_);
  a_->SetHandler([ask](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(ask) : FakeAction::Default();
  });
  // B imports the slot: it serves the key only right after ASKING, else MOVED back to A.
  b_->SetHandler([back](const FakeCommand& c) {
    if (c.Is("GET") && !c.asking) return FakeAction::Error(back);
    return FakeAction::Default();
  });
  b_->Set(key_, "from-b");

  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, "from-b");
  std::vector<FakeCommand> b_log = b_->Commands();
  std::vector<FakeCommand> gets;
  for (const FakeCommand& c : b_log) {
    if (c.Is("GET")) gets.push_back(c);
  }
  ASSERT_EQ(gets.size(), 1u);
  EXPECT_TRUE(gets[0].asking);
  std::vector<FakeCommand> conn = b_->CommandsOn(gets[0].connection_id);
  for (size_t i = 0; i < conn.size(); ++i) {
    if (!conn[i].Is("GET")) continue;
    ASSERT_GT(i, 0u);
    EXPECT_TRUE(conn[i - 1].Is("ASKING")) << "ASKING must immediately precede the command";
  }

  // ASK changes nothing in the map: the next request goes to A again.
  a_->SetHandler(nullptr);
  a_->Set(key_, "from-a");
  EXPECT_EQ(Cmd(client_.get(), {"GET", key_}).str, "from-a");
  EXPECT_EQ(a_->CountCommands("GET"), 2u);
  EXPECT_EQ(b_->CountCommands("GET"), 1u);
}

TEST_F(RedirectTest, TryAgainIsRetriedAfterABackoffUntilItSucceeds) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  auto calls = std::make_shared<std::atomic<int>>(0);
  a_->SetHandler([calls](const FakeCommand& c) {
    if (c.Is("GET") && calls->fetch_add(1) < 2) {
      return FakeAction::Error("TRYAGAIN Multiple keys request during rehashing of slot");
    }
    return FakeAction::Default();
  });
  a_->Set(key_, "v");
  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, "v");
  std::vector<FakeCommand> log = a_->Commands();
  std::vector<Clock::time_point> at;
  for (const FakeCommand& c : log) {
    if (c.Is("GET")) at.push_back(c.received_at);
  }
  ASSERT_EQ(at.size(), 3u);
  // retry-backoff-min is 10 ms with jitter in [base/2, base]: each resend waits at least ~5 ms.
  for (size_t i = 1; i < at.size(); ++i) {
    EXPECT_GE(std::chrono::duration_cast<milliseconds>(at[i] - at[i - 1]).count(), 4) << "resend " << i;
  }
}

TEST_F(RedirectTest, ClusterDownIsRetriedThenPassedOnWhenTheDeadlineIsNear) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  a_->SetHandler([](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error("CLUSTERDOWN The cluster is down") : FakeAction::Default();
  });
  size_t refreshes_before = ClusterSlotsQueries();
  // The proxy retries while the next attempt is due before the 500 ms deadline, then hands the
  // client the cluster's own error. If the machine is starved, the last attempt's reply can lose
  // the race with the deadline (then the client gets the proxy's timeout): allow a few tries, but
  // every answer must come by the deadline and one of them must be the cluster's error.
  bool passed_on = false;
  for (int attempt = 0; attempt < 3 && !passed_on; ++attempt) {
    size_t sends_before = a_->CountCommands("GET");
    auto start = Clock::now();
    RespValue v = Cmd(client_.get(), {"GET", key_});
    int64_t elapsed = MsSince(start);
    ASSERT_EQ(v.type, ReplyType::kError) << protocol::DebugString(v);
    passed_on = v.str == "CLUSTERDOWN The cluster is down";
    if (!passed_on) {
      EXPECT_NE(v.str.find("timed out after 500 ms"), std::string::npos) << v.str;
    }
    EXPECT_GE(elapsed, 250);  // kept retrying (backoff capped at 100 ms) until close to the deadline
    EXPECT_LT(elapsed, 650);
    EXPECT_GE(a_->CountCommands("GET") - sends_before, 3u);
  }
  EXPECT_TRUE(passed_on) << "CLUSTERDOWN was never passed on before the deadline";
  EXPECT_TRUE(WaitUntil([&] { return ClusterSlotsQueries() > refreshes_before; }))
      << "CLUSTERDOWN should ask for a topology refresh";
}

// During a healthy migration a multi-key command gets ASK, then TRYAGAIN from the importing
// node until its keys have moved. Every retry starts from the slot map again, so each attempt is
// one ASK: more attempts than max-redirects must not turn into a "redirect loop".
TEST_F(RedirectTest, AskThenTryAgainIsRetriedAsANewAttemptNotCountedAsALoop) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string ask = Ask(*b_);
  a_->SetHandler([ask](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(ask) : FakeAction::Default();
  });
  auto tries = std::make_shared<std::atomic<int>>(0);
  b_->SetHandler([tries](const FakeCommand& c) {
    if (c.Is("GET") && c.asking && tries->fetch_add(1) < 7) {
      return FakeAction::Error("TRYAGAIN Multiple keys request during rehashing of slot");
    }
    return FakeAction::Default();
  });
  b_->Set(key_, "migrated");
  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, "migrated");
  EXPECT_EQ(b_->CountCommands("GET"), 8u);
  RespValue info = Cmd(client_.get(), {"INFO"});
  EXPECT_NE(info.str.find("proxy_redirects_ask:8\r\n"), std::string::npos) << info.str;
}

TEST_F(RedirectTest, LoadingAndMasterDownAreRetried) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  auto calls = std::make_shared<std::atomic<int>>(0);
  a_->SetHandler([calls](const FakeCommand& c) {
    if (!c.Is("GET")) return FakeAction::Default();
    switch (calls->fetch_add(1)) {
      case 0: return FakeAction::Error("LOADING Redis is loading the dataset in memory");
      case 1:
        return FakeAction::Error(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.");
      default: return FakeAction::Default();
    }
  });
  a_->Set(key_, "loaded");
  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, "loaded");
  EXPECT_EQ(a_->CountCommands("GET"), 3u);
}

TEST_F(RedirectTest, MovedPingPongEndsWithALoopErrorAfterBoundedHops) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string to_b = Moved(*b_);
  std::string to_a = Moved(*a_);
  a_->SetHandler([to_b](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(to_b) : FakeAction::Default();
  });
  b_->SetHandler([to_a](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(to_a) : FakeAction::Default();
  });
  constexpr int kClients = 10;
  std::vector<RespValue> replies(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto c = proxy_->Connect();
      if (c != nullptr) replies[i] = Cmd(c.get(), {"GET", key_});
    });
  }
  for (auto& t : threads) t.join();
  for (const RespValue& v : replies) {
    ASSERT_EQ(v.type, ReplyType::kError) << protocol::DebugString(v);
    EXPECT_EQ(v.str.rfind("TRYAGAIN ", 0), 0u) << v.str;
    EXPECT_NE(v.str.find(StrCat("slot ", slot_, " ")), std::string::npos) << v.str;
    EXPECT_NE(v.str.find("redirect"), std::string::npos) << v.str;
    EXPECT_NE(v.str.find(a_->address()), std::string::npos) << v.str;
    EXPECT_NE(v.str.find(b_->address()), std::string::npos) << v.str;
  }
  // A -MOVED-> B -MOVED-> A is caught at the first revisit: two sends per request, never more
  // than max-redirects + 1, and nothing keeps going once the clients have their answers.
  size_t sends = a_->CountCommands("GET") + b_->CountCommands("GET");
  EXPECT_EQ(sends, 2u * kClients);
  std::this_thread::sleep_for(milliseconds(200));  // quiet period: no storm after the errors
  EXPECT_EQ(a_->CountCommands("GET") + b_->CountCommands("GET"), sends);
  EXPECT_LE(ClusterSlotsQueries(), 12u) << "topology refreshes must be coalesced";
}

TEST_F(RedirectTest, ChainOfDistinctNodesStopsAtMaxRedirects) {
  auto c = StartFake();
  auto d = StartFake();
  ASSERT_NE(c, nullptr);
  ASSERT_NE(d, nullptr);
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.max_redirects = 2; }));
  // A -> B -> C -> D: every hop a new node, so only the hop limit ends it.
  auto redirect_to = [this](const FakeRedisNode& next) {
    std::string moved = Moved(next);
    return [moved](const FakeCommand& cmd) {
      return cmd.Is("GET") ? FakeAction::Error(moved) : FakeAction::Default();
    };
  };
  a_->SetHandler(redirect_to(*b_));
  b_->SetHandler(redirect_to(*c));
  c->SetHandler(redirect_to(*d));
  RespValue v = Cmd(client_.get(), {"GET", key_});
  ASSERT_EQ(v.type, ReplyType::kError) << protocol::DebugString(v);
  EXPECT_EQ(v.str.rfind("TRYAGAIN ", 0), 0u) << v.str;
  EXPECT_NE(v.str.find(StrCat("slot ", slot_, " ")), std::string::npos) << v.str;
  EXPECT_NE(v.str.find("redirect"), std::string::npos) << v.str;
  EXPECT_EQ(a_->CountCommands("GET"), 1u);
  EXPECT_EQ(b_->CountCommands("GET"), 1u);
  EXPECT_EQ(c->CountCommands("GET"), 1u);
  EXPECT_EQ(d->CountCommands("GET"), 0u) << "the hop past max-redirects must not be sent";
}

TEST_F(RedirectTest, MovedWithAnEmptyHostFollowsTheSameHost) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string moved = StrCat("MOVED ", slot_, " :", b_->port());
  a_->SetHandler([moved](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(moved) : FakeAction::Default();
  });
  b_->Set(key_, "same-host");
  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, "same-host");
  EXPECT_EQ(b_->CountCommands("GET"), 1u);
}

TEST_F(RedirectTest, MovedWithAnUnknownEndpointIsPassedThrough) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string moved = StrCat("MOVED ", slot_, " ?:", b_->port());
  a_->SetHandler([moved](const FakeCommand& c) {
    return c.Is("GET") ? FakeAction::Error(moved) : FakeAction::Default();
  });
  RespValue v = Cmd(client_.get(), {"GET", key_});
  EXPECT_EQ(v.type, ReplyType::kError);
  EXPECT_EQ(v.str, moved);
  EXPECT_EQ(b_->CountCommands("GET"), 0u);
  EXPECT_EQ(a_->CountCommands("GET"), 1u);
}

}  // namespace
}  // namespace slotpilot::testing
