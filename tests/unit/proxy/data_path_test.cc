// The data path end to end in-process: reply ordering, multiplexing, deadlines, upstream failures
// and reconnects, topology changes, graceful drain and upstream AUTH, against fake nodes.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/proxy/proxy_harness.h"

namespace slotpilot::testing {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

// A owns slots 0-8191, B 8192-16383.
class DataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = StartFake();
    b_ = StartFake();
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
    SetLayout({a_.get(), b_.get()}, {{0, 8191, *a_}, {8192, 16383, *b_}});
  }

  void StartProxy(const std::function<void(proxy::ProxyOptions&)>& tweak = nullptr) {
    proxy::ProxyOptions o = FastOptions({a_.get(), b_.get()});
    if (tweak) tweak(o);
    proxy_ = ProxyUnderTest::Start(o);
    ASSERT_NE(proxy_, nullptr);
    client_ = proxy_->Connect();
    ASSERT_NE(client_, nullptr);
  }

  static std::string KeyOnA(int salt = 0) { return KeyInSlots(0, 8191, salt); }
  static std::string KeyOnB(int salt = 0) { return KeyInSlots(8192, 16383, salt); }

  std::unique_ptr<FakeRedisNode> a_;
  std::unique_ptr<FakeRedisNode> b_;
  std::unique_ptr<ProxyUnderTest> proxy_;
  std::unique_ptr<migration::RedisClient> client_;
};

// A handler that answers GET through `action` and everything else with the built-ins.
FakeRedisNode::Handler OnGet(FakeAction action) {
  return [action](const FakeCommand& c) { return c.Is("GET") ? action : FakeAction::Default(); };
}

TEST_F(DataPathTest, RepliesLeaveInRequestOrderWhenTheFirstNodeIsSlow) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  a_->SetHandler(OnGet(FakeAction::Default().Delayed(milliseconds(200))));
  std::vector<std::vector<std::string>> pipeline;
  std::vector<std::string> expected;
  for (int i = 0; i < 3; ++i) {
    a_->Set(KeyOnA(i), StrCat("a", i));
    b_->Set(KeyOnB(i), StrCat("b", i));
  }
  for (auto [on_a, i] : std::vector<std::pair<bool, int>>{{true, 0}, {false, 0}, {true, 1},
                                                          {false, 1}, {false, 2}, {true, 2}}) {
    pipeline.push_back({"GET", on_a ? KeyOnA(i) : KeyOnB(i)});
    expected.push_back(StrCat(on_a ? "a" : "b", i));
  }
  auto start = Clock::now();
  auto replies = client_->Pipeline(pipeline);
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_GE(MsSince(start), 190);
  ASSERT_EQ(replies->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*replies)[i].str, expected[i]) << "reply " << i;
  }
  // B had every one of its requests well before A's first reply was due: the proxy held B's
  // replies back to keep the client's order.
  std::vector<FakeCommand> a_log = a_->Commands();
  std::vector<FakeCommand> b_log = b_->Commands();
  Clock::time_point a_first_get = Clock::time_point::max();
  for (const FakeCommand& c : a_log) {
    if (c.Is("GET")) a_first_get = std::min(a_first_get, c.received_at);
  }
  for (const FakeCommand& c : b_log) {
    if (!c.Is("GET")) continue;
    EXPECT_LT(c.received_at, a_first_get + milliseconds(150));
  }
}

TEST_F(DataPathTest, LocalAndForwardedRepliesShareOneOrder) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  a_->SetHandler(OnGet(FakeAction::Default().Delayed(milliseconds(100))));
  a_->Set(KeyOnA(), "slow");
  b_->Set(KeyOnB(), "fast");
  auto replies = client_->Pipeline({{"GET", KeyOnA()},
                                    {"PING"},
                                    {"NOSUCHCOMMAND"},
                                    {"GET", KeyOnB()},
                                    {"RENAME", "a", "b"},
                                    {"ECHO", "last"}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 6u);
  EXPECT_EQ((*replies)[0].str, "slow");
  EXPECT_EQ((*replies)[1].str, "PONG");
  EXPECT_EQ((*replies)[2].str, "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: ");
  EXPECT_EQ((*replies)[3].str, "fast");
  EXPECT_EQ((*replies)[4].str, "CROSSSLOT Keys in request don't hash to the same slot");
  EXPECT_EQ((*replies)[5].str, "last");
}

TEST_F(DataPathTest, ManyConcurrentClientsAreMultiplexedOntoFewUpstreamConnections) {
  // 10,000 commands at once on a loaded 2-core CI machine (ASan): the harness's 500 ms request
  // and 200 ms connect timeouts would measure the machine, not the multiplexing.
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.request_timeout_ms = 10000;
    o.worker.connect_timeout_ms = 5000;
  }));
  constexpr int kClients = 50;
  constexpr int kPairs = 100;  // SET + GET each: 200 pipelined commands per client
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = proxy_->Connect(milliseconds(10000));
      if (c == nullptr) {
        failed.fetch_add(1);
        return;
      }
      std::vector<std::vector<std::string>> cmds;
      for (int i = 0; i < kPairs; ++i) {
        std::string key = StrCat("c", t, ":k", i);
        cmds.push_back({"SET", key, StrCat("v", t, ":", i)});
        cmds.push_back({"GET", key});
      }
      auto replies = c->Pipeline(cmds);
      if (!replies.ok() || replies->size() != cmds.size()) {
        failed.fetch_add(1);
        return;
      }
      for (int i = 0; i < kPairs; ++i) {
        const RespValue& set = (*replies)[2 * i];
        const RespValue& get = (*replies)[2 * i + 1];
        if (set.type != ReplyType::kStatus || set.str != "OK" || get.str != StrCat("v", t, ":", i)) {
          if (wrong.fetch_add(1) < 3) {
            ADD_FAILURE() << "client " << t << " pair " << i << ": SET -> " << protocol::DebugString(set)
                          << ", GET -> " << protocol::DebugString(get);
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(a_->CountCommands("SET") + b_->CountCommands("SET"), size_t{kClients * kPairs});
  EXPECT_GT(a_->CountCommands("SET"), 0u);
  EXPECT_GT(b_->CountCommands("SET"), 0u);
  EXPECT_EQ(b_->Get("c7:k3").value_or(a_->Get("c7:k3").value_or("")), "v7:3");
  // One data-path connection per node per worker, plus the topology refresher's.
  EXPECT_LE(a_->connections_accepted(), 3u);
  EXPECT_LE(b_->connections_accepted(), 3u);
}

TEST_F(DataPathTest, StalledNodeTimesOutWhileTheOtherNodeKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  a_->SetHandler(OnGet(FakeAction::Default().Held()));
  b_->Set(KeyOnB(), "fast");
  // Two timeouts in a row: each must come at request-timeout, not at some later loop wake-up.
  std::vector<RespValue> stalled(2);
  std::vector<int64_t> stalled_ms(2);
  std::thread waiter([&] {
    auto c = proxy_->Connect();
    for (size_t i = 0; i < stalled.size() && c != nullptr; ++i) {
      auto start = Clock::now();
      stalled[i] = Cmd(c.get(), {"GET", KeyOnA(static_cast<int>(i))});
      stalled_ms[i] = MsSince(start);
    }
  });
  ASSERT_TRUE(WaitUntil([&] { return a_->CountCommands("GET") == 1; }));
  // Meanwhile another client's requests to B are answered promptly.
  auto other_start = Clock::now();
  for (int i = 0; i < 20; ++i) {
    auto start = Clock::now();
    EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnB()}).str, "fast");
    EXPECT_LT(MsSince(start), 150) << "request " << i;
  }
  EXPECT_LT(MsSince(other_start), 400) << "B's requests must not wait for A's deadline";
  waiter.join();
  for (size_t i = 0; i < stalled.size(); ++i) {
    EXPECT_EQ(stalled[i].type, ReplyType::kError) << i;
    EXPECT_NE(stalled[i].str.find("timed out after 500 ms"), std::string::npos) << stalled[i].str;
    EXPECT_NE(stalled[i].str.find(a_->address()), std::string::npos) << stalled[i].str;
    EXPECT_GE(stalled_ms[i], 450) << i;
    EXPECT_LE(stalled_ms[i], 800) << i;
  }
  a_->ReleaseHeld();
}

TEST_F(DataPathTest, UpstreamDisconnectMidRequestFailsItAndTheNextRequestReconnects) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  auto drop = std::make_shared<std::atomic<bool>>(true);
  a_->SetHandler([drop](const FakeCommand& c) {
    if (c.Is("GET") && drop->exchange(false)) return FakeAction::Close();
    return FakeAction::Default();
  });
  a_->Set(KeyOnA(), "after-reconnect");
  b_->Set(KeyOnB(), "b");
  size_t accepted_before = a_->connections_accepted();
  auto start = Clock::now();
  auto replies = client_->Pipeline({{"GET", KeyOnA()}, {"GET", KeyOnB()}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_LT(MsSince(start), 300);
  EXPECT_EQ((*replies)[0].type, ReplyType::kError);
  EXPECT_NE((*replies)[0].str.find("lost"), std::string::npos) << (*replies)[0].str;
  EXPECT_EQ((*replies)[1].str, "b");
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnA()}).str, "after-reconnect");
  EXPECT_GT(a_->connections_accepted(), accepted_before);
}

TEST_F(DataPathTest, UnreachableNodeFailsFastAndIsRetriedAfterABackoff) {
  auto c = StartFake();
  ASSERT_NE(c, nullptr);
  c->StopListening();
  SetLayout({a_.get(), b_.get(), c.get()}, {{0, 8191, *a_}, {8192, 16383, *c}});
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.reconnect_backoff_min_ms = 400;
    o.worker.reconnect_backoff_max_ms = 800;
    o.topology.seeds.pop_back();  // b_: only A is asked for the layout
  }));
  c->Set(KeyOnB(), "back");

  auto start = Clock::now();
  RespValue first = Cmd(client_.get(), {"GET", KeyOnB()});
  int64_t first_ms = MsSince(start);
  auto failed_at = Clock::now();
  EXPECT_EQ(first.type, ReplyType::kError);
  EXPECT_NE(first.str.find("unreachable"), std::string::npos) << first.str;
  EXPECT_LT(first_ms, 150) << "a refused connection must fail well before request-timeout";

  // The node is back, but the proxy is still backing off: fail fast without trying it.
  ASSERT_TRUE(c->StartListening().ok());
  start = Clock::now();
  RespValue second = Cmd(client_.get(), {"GET", KeyOnB()});
  EXPECT_LT(MsSince(start), 50);
  EXPECT_EQ(second.type, ReplyType::kError);
  EXPECT_NE(second.str.find("unreachable"), std::string::npos) << second.str;
  EXPECT_EQ(c->CountCommands("GET"), 0u);

  // After the backoff the next request connects and succeeds.
  RespValue later;
  EXPECT_TRUE(WaitUntil([&] {
    later = Cmd(client_.get(), {"GET", KeyOnB()});
    return later.str == "back";
  }, milliseconds(3000))) << protocol::DebugString(later);
  EXPECT_GE(MsSince(failed_at), 400 - 400 / 8 - 10);
  EXPECT_EQ(c->CountCommands("GET"), 1u);
}

TEST_F(DataPathTest, ClientGoneWhileItsRequestIsInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.request_timeout_ms = 3000; }));
  a_->SetHandler(OnGet(FakeAction::Default().Held()));
  a_->Set(KeyOnA(), "late");
  {
    RawClient gone(proxy_->port());
    gone.Send(StrCat("GET ", KeyOnA(), "\r\nGET ", KeyOnA(), "\r\n"));
    ASSERT_TRUE(WaitUntil([&] { return a_->CountCommands("GET") == 2; }));
  }  // the client disconnects with two requests in flight
  a_->SetHandler(nullptr);
  a_->ReleaseHeld();  // their replies arrive for nobody; the upstream stays in step
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnA()}).str, "late");
  EXPECT_EQ(Cmd(client_.get(), {"SET", KeyOnA(1), "x"}).str, "OK");
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnA(1)}).str, "x");
}

TEST_F(DataPathTest, GarbageFromANodeDropsItsConnectionAndFailsWhatWasInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  std::string bad = KeyOnA(1);
  std::string good = KeyOnA(2);
  auto garbage = std::make_shared<std::atomic<bool>>(true);
  a_->SetHandler([bad, garbage](const FakeCommand& c) {
    if (c.Is("GET") && c.argv[1] == bad && garbage->exchange(false)) {
      return FakeAction::Raw("garbage\r\n");
    }
    return FakeAction::Default();
  });
  a_->Set(good, "good");
  b_->Set(KeyOnB(), "b");
  auto replies = client_->Pipeline({{"GET", bad}, {"GET", good}, {"GET", KeyOnB()}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  for (int i : {0, 1}) {
    EXPECT_EQ((*replies)[i].type, ReplyType::kError) << i;
    EXPECT_NE((*replies)[i].str.find("protocol error"), std::string::npos) << (*replies)[i].str;
  }
  EXPECT_EQ((*replies)[2].str, "b");
  // The proxy keeps serving, A included (on a new connection).
  EXPECT_EQ(Cmd(client_.get(), {"GET", good}).str, "good");
  auto other = proxy_->Connect();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(Cmd(other.get(), {"GET", KeyOnB()}).str, "b");
}

TEST_F(DataPathTest, PeriodicRefreshPicksUpAChangedLayout) {
  auto c = StartFake();
  ASSERT_NE(c, nullptr);
  c->SetSlots({{0, 8191, *a_}, {8192, 16383, *b_}});
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.topology.interval_ms = 200; }));
  b_->Set(KeyOnB(), "from-b");
  c->Set(KeyOnB(), "from-c");
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnB()}).str, "from-b");

  // B's slots move to C; nothing answers MOVED, only the periodic refresh can notice.
  SetLayout({a_.get(), b_.get(), c.get()}, {{0, 8191, *a_}, {8192, 16383, *c}});
  ASSERT_TRUE(WaitUntil([&] { return proxy_->TopologyVersion() >= 2; }, milliseconds(3000)));
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnB()}).str, "from-c");
  EXPECT_EQ(b_->CountCommands("GET"), 1u);
}

TEST_F(DataPathTest, FailoverWithoutMovedIsPickedUpByTheRefresh) {
  auto c = StartFake();
  ASSERT_NE(c, nullptr);
  c->SetSlots({{0, 8191, *a_}, {8192, 16383, *b_}});
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  a_->Set(KeyOnA(), "from-a");
  c->Set(KeyOnA(), "from-c");  // C is A's replica, promoted below
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnA()}).str, "from-a");

  // A dies; the cluster promotes C. Nobody sends MOVED: the proxy learns it from the refresh its
  // lost connection asks for.
  a_->StopListening();
  SetLayout({b_.get(), c.get()}, {{0, 8191, *c}, {8192, 16383, *b_}});
  a_->KillConnections();
  RespValue v;
  EXPECT_TRUE(WaitUntil([&] {
    v = Cmd(client_.get(), {"GET", KeyOnA()});
    return v.str == "from-c";
  }, milliseconds(5000))) << protocol::DebugString(v);
  RespValue info = Cmd(client_.get(), {"INFO"});
  EXPECT_NE(info.str.find("proxy_redirects_moved:0\r\n"), std::string::npos) << info.str;
  EXPECT_EQ(b_->CountIf([](const FakeCommand& cmd) { return cmd.Is("GET"); }), 0u);
}

TEST_F(DataPathTest, ShutdownDrainsARequestInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.request_timeout_ms = 5000; }));
  a_->SetHandler(OnGet(FakeAction::Default().Held()));
  a_->Set(KeyOnA(), "drained");
  RespValue reply;
  std::atomic<bool> replied{false};
  std::thread requester([&] {
    auto c = proxy_->Connect(milliseconds(8000));
    if (c != nullptr) reply = Cmd(c.get(), {"GET", KeyOnA()});
    replied.store(true);
  });
  ASSERT_TRUE(WaitUntil([&] { return a_->CountCommands("GET") == 1; }));
  proxy_->proxy().Shutdown();
  // Draining: the listener is closed at once, the request in flight is not abandoned.
  EXPECT_TRUE(WaitUntil([&] {
    migration::RedisClientOptions o;
    o.connect_timeout = milliseconds(200);
    return !migration::RedisClient::Connect("127.0.0.1", proxy_->port(), o).ok();
  }));
  EXPECT_FALSE(proxy_->run_returned());
  EXPECT_FALSE(replied.load());
  a_->ReleaseHeld();
  requester.join();
  EXPECT_EQ(reply.type, ReplyType::kBulk) << protocol::DebugString(reply);
  EXPECT_EQ(reply.str, "drained");
  EXPECT_TRUE(WaitUntil([&] { return proxy_->run_returned(); }, milliseconds(3000)));
}

TEST_F(DataPathTest, UpstreamAuthIsSentFirstOnEveryConnection) {
  a_->SetPassword("cluster-pw");
  b_->SetPassword("cluster-pw");
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.upstream_password = "cluster-pw";
    o.topology.client.password = "cluster-pw";
  }));
  a_->Set(KeyOnA(), "a");
  b_->Set(KeyOnB(), "b");
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnA()}).str, "a");
  EXPECT_EQ(Cmd(client_.get(), {"GET", KeyOnB()}).str, "b");
  a_->KillConnections();
  RespValue v;
  EXPECT_TRUE(WaitUntil([&] {
    v = Cmd(client_.get(), {"GET", KeyOnA()});
    return v.str == "a";
  })) << protocol::DebugString(v);

  std::set<uint64_t> data_connections;
  for (FakeRedisNode* node : {a_.get(), b_.get()}) {
    std::vector<FakeCommand> log = node->Commands();
    std::set<uint64_t> seen;
    for (const FakeCommand& c : log) {
      if (!seen.insert(c.connection_id).second) continue;  // not the connection's first command
      EXPECT_EQ(c.argv, (std::vector<std::string>{"AUTH", "cluster-pw"}))
          << node->address() << " connection " << c.connection_id;
    }
    for (const FakeCommand& c : log) {
      if (c.Is("GET")) data_connections.insert(c.connection_id * 2 + (node == b_.get()));
    }
  }
  EXPECT_GE(data_connections.size(), 3u) << "A's data connection was re-established";
}

TEST_F(DataPathTest, RejectedUpstreamAuthFailsRequestsFastWithTheReason) {
  a_->SetPassword("the-real-one");
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.upstream_password = "a-stale-one";
  }));
  auto start = Clock::now();
  RespValue v = Cmd(client_.get(), {"GET", KeyOnA()});
  EXPECT_LT(MsSince(start), 300);
  EXPECT_EQ(v.type, ReplyType::kError);
  EXPECT_NE(v.str.find("WRONGPASS"), std::string::npos) << v.str;
  EXPECT_EQ(a_->CountCommands("GET"), 1u);  // pipelined behind AUTH, never answered for real
  EXPECT_EQ(Cmd(client_.get(), {"PING"}).str, "PONG");
}

}  // namespace
}  // namespace slotpilot::testing
