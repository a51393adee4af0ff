// Client-side limits and bad input, mostly over raw sockets: protocol errors, size limits,
// slowloris, slow readers, pipeline backpressure, max clients, idle timeout, inline commands.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/proxy/proxy_harness.h"

namespace slotpilot::testing {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

// Resident set size of this process (the proxy runs in it), in bytes.
size_t ResidentBytes() {
  long pages = 0;
  long resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// One node owns every slot.
class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = StartFake();
    ASSERT_NE(node_, nullptr);
    node_->SetSlots({{0, 16383, *node_}});
  }

  void StartProxy(const std::function<void(proxy::ProxyOptions&)>& tweak = nullptr) {
    proxy::ProxyOptions o = FastOptions({node_.get()});
    if (tweak) tweak(o);
    proxy_ = ProxyUnderTest::Start(o);
    ASSERT_NE(proxy_, nullptr);
    client_ = proxy_->Connect();
    ASSERT_NE(client_, nullptr);
  }

  // connected_clients as the proxy's INFO reports it (this fixture's client included).
  int64_t ConnectedClients() {
    RespValue info = Cmd(client_.get(), {"INFO"});
    constexpr std::string_view kKey = "connected_clients:";
    size_t at = info.str.find(kKey);
    if (at == std::string::npos) return -1;
    int64_t n = -1;
    size_t end = info.str.find('\r', at);
    ParseInt(std::string_view(info.str).substr(at + kKey.size(), end - at - kKey.size()), &n);
    return n;
  }

  // Sends `bytes` on a fresh connection and returns everything received until the proxy closes it
  // (the test fails if it does not close within 3 s).
  std::string SendExpectClose(std::string_view bytes) {
    RawClient raw(proxy_->port());
    raw.Send(bytes);
    std::string got;
    EXPECT_TRUE(raw.ReadUntilClosed(&got)) << "still open after: " << got;
    return got;
  }

  std::unique_ptr<FakeRedisNode> node_;
  std::unique_ptr<ProxyUnderTest> proxy_;
  std::unique_ptr<migration::RedisClient> client_;
};

TEST_F(LimitsTest, MalformedRespGetsAProtocolErrorAndTheConnectionIsClosed) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  EXPECT_EQ(SendExpectClose("*1\r\n$x\r\n"), "-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_EQ(SendExpectClose("*abc\r\n"), "-ERR Protocol error: invalid multibulk length\r\n");
  EXPECT_EQ(SendExpectClose("*2\r\n$3\r\nGET\r\n:1\r\n"),
            "-ERR Protocol error: expected '$', got ':'\r\n");
  // Requests before the bad one are answered first, in order.
  EXPECT_EQ(SendExpectClose("PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$-5\r\n"),
            "+PONG\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_EQ(node_->CountIf([](const FakeCommand& c) { return c.Is("GET"); }), 0u);
  EXPECT_EQ(Cmd(client_.get(), {"PING"}).str, "PONG");
}

TEST_F(LimitsTest, BulkLongerThanProtoMaxBulkLenIsRefusedFromItsHeader) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.request_limits.max_bulk_bytes = 1024; }));
  // Refused on the header alone: the proxy does not wait for (or buffer) the payload.
  EXPECT_EQ(SendExpectClose("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n"),
            "-ERR Protocol error: invalid bulk length\r\n");
  std::string at_limit(1024, 'x');
  RespValue ok = Cmd(client_.get(), {"SET", "k", at_limit});
  EXPECT_EQ(ok.str, "OK") << protocol::DebugString(ok);
  EXPECT_EQ(node_->Get("k").value_or(""), at_limit);
}

TEST_F(LimitsTest, HugeArgumentCountWithFewArgumentsKeepsMemoryBounded) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  size_t before = ResidentBytes();
  std::vector<std::unique_ptr<RawClient>> liars;
  for (int i = 0; i < 20; ++i) {
    liars.push_back(std::make_unique<RawClient>(proxy_->port()));
    liars.back()->Send("*1000000\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
  }
  // The proxy stays responsive for everybody else...
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Cmd(client_.get(), {"PING"}).str, "PONG");
  node_->Set("x", "y");
  EXPECT_EQ(Cmd(client_.get(), {"GET", "x"}).str, "y");
  // ...did not size anything by the announced count (20 x 1e6 arguments would be hundreds of MB)...
  size_t after = ResidentBytes();
  EXPECT_LT(after, before + (64u << 20)) << "RSS grew from " << before << " to " << after;
  // ...and forwarded nothing of the incomplete requests.
  EXPECT_EQ(node_->CountCommands("SET"), 0u);
  EXPECT_FALSE(liars[0]->closed());
  // Past max-args the count itself is a protocol error.
  EXPECT_EQ(SendExpectClose("*2000000\r\n"), "-ERR Protocol error: invalid multibulk length\r\n");
}

TEST_F(LimitsTest, SlowlorisIsClosedAfterPartialRequestTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.partial_request_timeout_ms = 200; }));
  RawClient slow(proxy_->port());
  auto start = Clock::now();
  slow.Send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nab");
  // Dripping bytes does not extend the deadline of an incomplete request.
  for (char c : std::string("cdef")) {
    std::this_thread::sleep_for(milliseconds(60));
    slow.Send(std::string(1, c));
    EXPECT_EQ(Cmd(client_.get(), {"PING"}).str, "PONG");  // others are served meanwhile
  }
  std::string got;
  EXPECT_TRUE(slow.ReadUntilClosed(&got, milliseconds(3000)));
  int64_t elapsed = MsSince(start);
  EXPECT_EQ(got, "");
  EXPECT_GE(elapsed, 200);
  EXPECT_LE(elapsed, 2500);  // timeout + one sweep interval (1 s) + margin
  EXPECT_EQ(node_->CountCommands("SET"), 0u);
}

TEST_F(LimitsTest, ClientThatNeverReadsIsDisconnectedOverClientMaxOutputBytes) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.client_max_output_bytes = 256 * 1024;
    o.worker.request_timeout_ms = 10000;  // the replies must arrive, not time out, on a slow box
  }));
  node_->Set("big", std::string(64 * 1024, 'b'));
  node_->Set("small", "s");
  constexpr int kRequests = 300;  // ~19 MB of replies
  RawClient hog(proxy_->port(), /*rcvbuf=*/4096);
  std::string requests;
  for (int i = 0; i < kRequests; ++i) requests += "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
  ASSERT_TRUE(hog.Send(requests));
  ASSERT_TRUE(WaitUntil([&] { return node_->CountCommands("GET") >= size_t{kRequests}; }));
  // The hog is dropped (connected_clients falls back to just our client); the worker keeps
  // serving everybody else meanwhile.
  EXPECT_TRUE(WaitUntil([&] {
    EXPECT_EQ(Cmd(client_.get(), {"PING"}).str, "PONG");
    return ConnectedClients() == 1;
  }, milliseconds(10000)));
  EXPECT_EQ(Cmd(client_.get(), {"GET", "small"}).str, "s");
  std::string got;
  EXPECT_TRUE(hog.ReadUntilClosed(&got, milliseconds(5000)));
  EXPECT_LT(got.size(), size_t{kRequests} * 64 * 1024) << "the hog must not receive every reply";
}

TEST_F(LimitsTest, MaxPendingPerClientPausesReadingAndKeepsOrder) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) {
    o.worker.max_pending_per_client = 8;
    o.worker.request_timeout_ms = 5000;
  }));
  auto hold = std::make_shared<std::atomic<bool>>(true);
  node_->SetHandler([hold](const FakeCommand& c) {
    if (c.Is("GET") && hold->load()) return FakeAction::Default().Held();
    return FakeAction::Default();
  });
  constexpr int kRequests = 40;
  std::vector<std::vector<std::string>> cmds;
  for (int i = 0; i < kRequests; ++i) {
    node_->Set(StrCat("k", i), StrCat("v", i));
    cmds.push_back({"GET", StrCat("k", i)});
  }
  absl::StatusOr<std::vector<RespValue>> replies;
  std::thread pipeliner([&] {
    auto c = proxy_->Connect(milliseconds(8000));
    if (c != nullptr) replies = c->Pipeline(cmds);
  });
  ASSERT_TRUE(WaitUntil([&] { return node_->CountCommands("GET") == 8; }));
  std::this_thread::sleep_for(milliseconds(150));  // quiet period: reading is paused at 8
  EXPECT_EQ(node_->CountCommands("GET"), 8u);
  hold->store(false);
  node_->ReleaseHeld();
  pipeliner.join();
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), size_t{kRequests});
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ((*replies)[i].str, StrCat("v", i)) << i;
  EXPECT_EQ(node_->CountCommands("GET"), size_t{kRequests});
}

TEST_F(LimitsTest, MaxClientsRefusesTheExtraConnectionWithRedisText) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.max_clients = 3; }));
  ASSERT_TRUE(WaitUntil([&] { return ConnectedClients() == 1; }));  // start-up probes are gone
  auto second = proxy_->Connect();
  auto third = proxy_->Connect();
  ASSERT_NE(second, nullptr);
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(Cmd(second.get(), {"PING"}).str, "PONG");
  EXPECT_EQ(Cmd(third.get(), {"PING"}).str, "PONG");

  RawClient fourth(proxy_->port());
  std::string got;
  EXPECT_TRUE(fourth.ReadUntilClosed(&got));
  EXPECT_EQ(got, "-ERR max number of clients reached\r\n");

  third.reset();
  EXPECT_TRUE(WaitUntil([&] {
    auto again = proxy_->Connect();
    return again != nullptr && Cmd(again.get(), {"PING"}).str == "PONG";
  }));
}

TEST_F(LimitsTest, IdleClientsAreClosedAfterIdleTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartProxy([](proxy::ProxyOptions& o) { o.worker.idle_timeout_ms = 300; }));
  RawClient idle(proxy_->port());
  idle.Send("PING\r\n");
  EXPECT_EQ(idle.ReadBytes(7), "+PONG\r\n");
  auto start = Clock::now();
  // A busy client over the same period is left alone.
  RawClient busy(proxy_->port());
  while (!idle.closed() && MsSince(start) < 3000) {
    busy.Send("PING\r\n");
    EXPECT_EQ(busy.ReadBytes(7), "+PONG\r\n");
    std::string none;
    idle.ReadUntilClosed(&none, milliseconds(100));
  }
  int64_t elapsed = MsSince(start);
  EXPECT_TRUE(idle.closed());
  EXPECT_GE(elapsed, 280);
  EXPECT_LE(elapsed, 2500);  // timeout + one sweep interval (1 s) + margin
  busy.Send("PING\r\n");
  EXPECT_EQ(busy.ReadBytes(7), "+PONG\r\n");
}

TEST_F(LimitsTest, InlineCommandsWorkAndAreForwardedAsResp) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  RawClient raw(proxy_->port());
  raw.Send("PING\r\n");
  EXPECT_EQ(raw.ReadBytes(7), "+PONG\r\n");
  raw.Send("SET a \"b c\"\r\n");
  EXPECT_EQ(raw.ReadBytes(5), "+OK\r\n");
  raw.Send("GET a\r\n");
  EXPECT_EQ(raw.ReadBytes(9), "$3\r\nb c\r\n");
  std::vector<FakeCommand> log = node_->Commands();
  std::vector<FakeCommand> forwarded;
  for (const FakeCommand& c : log) {
    if (c.Is("SET") || c.Is("GET")) forwarded.push_back(c);
  }
  ASSERT_EQ(forwarded.size(), 2u);
  EXPECT_EQ(forwarded[0].argv, (std::vector<std::string>{"SET", "a", "b c"}));
  EXPECT_EQ(forwarded[1].argv, (std::vector<std::string>{"GET", "a"}));
  EXPECT_FALSE(forwarded[0].inline_request) << "upstreams must get RESP";
  EXPECT_FALSE(forwarded[1].inline_request);
}

}  // namespace
}  // namespace slotpilot::testing
