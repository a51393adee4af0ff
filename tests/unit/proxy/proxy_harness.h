// Shared by the data-path tests: a slotpilot Proxy running in-process on its own thread in front
// of FakeRedisNodes, plus raw-socket and key helpers. Header-only (included by the test files of
// the data_path_tests target).
#ifndef SLOTPILOT_TESTS_UNIT_PROXY_PROXY_HARNESS_H_
#define SLOTPILOT_TESTS_UNIT_PROXY_PROXY_HARNESS_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "migration/redis_client.h"
#include "protocol/resp.h"
#include "protocol/slot.h"
#include "protocol/strings.h"
#include "proxy/proxy.h"
#include "spdlog/spdlog.h"
#include "tests/support/fake_redis.h"
#include "tests/support/redis_server.h"

namespace slotpilot::testing {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

inline int64_t MsSince(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

// Starts a fake node or fails the test.
inline std::unique_ptr<FakeRedisNode> StartFake() {
  auto node = FakeRedisNode::Start();
  EXPECT_TRUE(node.ok()) << node.status();
  return node.ok() ? *std::move(node) : nullptr;
}

// The same layout on every node, as a healthy cluster reports it.
inline void SetLayout(const std::vector<FakeRedisNode*>& nodes,
                      const std::vector<FakeSlotRange>& layout) {
  for (FakeRedisNode* n : nodes) n->SetSlots(layout);
}

// A key whose slot lies in [first, last]; `salt` gives different keys for the same range.
inline std::string KeyInSlots(int first, int last, int salt = 0) {
  for (int i = 0;; ++i) {
    std::string key = StrCat("key:", salt, ":", i);
    int slot = protocol::KeyHashSlot(key);
    if (slot >= first && slot <= last) return key;
  }
}

// Short timeouts so every failure path runs in well under a second.
inline proxy::ProxyOptions FastOptions(const std::vector<FakeRedisNode*>& seeds) {
  proxy::ProxyOptions o;
  o.threads = 1;
  o.shutdown_grace_ms = 3000;
  o.admin_enabled = false;  // a fixed admin port would collide between parallel test processes
  proxy::WorkerOptions& w = o.worker;
  w.listen_host = "127.0.0.1";
  w.request_timeout_ms = 500;
  w.connect_timeout_ms = 200;
  w.reconnect_backoff_min_ms = 50;
  w.reconnect_backoff_max_ms = 200;
  w.retry_backoff_min_ms = 10;
  w.retry_backoff_max_ms = 100;
  w.max_redirects = 5;
  // ASK replies would start the migration throttle; throttle_data_path_test.cc turns it on.
  w.throttle.mode = proxy::ThrottleOptions::Mode::kOff;
  proxy::TopologyRefresherOptions& t = o.topology;
  t.interval_ms = 60000;  // no periodic refresh unless a test asks for one
  t.min_interval_ms = 50;
  t.client.connect_timeout = milliseconds(200);
  t.client.command_timeout = milliseconds(1000);
  for (FakeRedisNode* n : seeds) t.seeds.push_back({n->host(), n->port()});
  return o;
}

// A blocking client with a bounded command timeout (a hang fails the test, never blocks it).
inline std::unique_ptr<migration::RedisClient> ConnectClient(uint16_t port,
                                                            milliseconds timeout = milliseconds(3000)) {
  migration::RedisClientOptions o;
  o.connect_timeout = milliseconds(1000);
  o.command_timeout = timeout;
  auto c = migration::RedisClient::Connect("127.0.0.1", port, o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// Runs one command; a transport failure becomes an error value whose text starts "transport:".
inline protocol::RespValue Cmd(migration::RedisClient* c, std::initializer_list<std::string_view> args) {
  auto r = c->Command(args);
  if (r.ok()) return *std::move(r);
  protocol::RespValue v;
  v.type = protocol::ReplyType::kError;
  v.str = StrCat("transport: ", AsStd(r.status().message()));
  return v;
}

// The proxy on its own thread. Start() picks a free port (retrying if another process takes it)
// and returns once the worker has installed a topology; the destructor shuts it down and joins.
class ProxyUnderTest {
 public:
  static std::unique_ptr<ProxyUnderTest> Start(proxy::ProxyOptions options) {
    spdlog::set_level(spdlog::level::err);
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto port = PickFreePortPair();
      if (!port.ok()) continue;
      options.worker.listen_port = static_cast<uint16_t>(*port);
      std::unique_ptr<ProxyUnderTest> p(new ProxyUnderTest(options));
      if (p->WaitServing()) return p;
    }
    ADD_FAILURE() << "proxy did not start";
    return nullptr;
  }

  ~ProxyUnderTest() { Stop(); }

  // Shutdown() and join; true if Run() returned within `timeout`. Idempotent.
  bool Stop(milliseconds timeout = milliseconds(10000)) {
    if (!thread_.joinable()) return true;
    if (!done_.load()) proxy_->Shutdown();
    bool done = WaitUntil([&] { return done_.load(); }, timeout);
    EXPECT_TRUE(done) << "proxy did not stop within " << timeout.count() << " ms";
    thread_.join();  // if it hangs, the test's own timeout reports it
    return done;
  }

  uint16_t port() const { return port_; }
  bool run_returned() const { return done_.load(); }
  proxy::Proxy& proxy() { return *proxy_; }
  std::unique_ptr<migration::RedisClient> Connect(milliseconds timeout = milliseconds(3000)) const {
    return ConnectClient(port_, timeout);
  }

  // The worker's topology version as INFO reports it (0: none installed yet).
  int64_t TopologyVersion() const {
    auto c = ConnectClient(port_);
    if (c == nullptr) return -1;
    if (!client_password_.empty()) Cmd(c.get(), {"AUTH", client_password_});
    // Only the proxy's own section: plain INFO also asks every master (keyspace).
    protocol::RespValue info = Cmd(c.get(), {"INFO", "proxy"});
    constexpr std::string_view kKey = "proxy_topology_version:";
    size_t at = info.str.find(kKey);
    if (at == std::string::npos) return -1;
    int64_t v = -1;
    size_t end = info.str.find('\r', at);
    ParseInt(std::string_view(info.str).substr(at + kKey.size(), end - at - kKey.size()), &v);
    return v;
  }

 private:
  explicit ProxyUnderTest(proxy::ProxyOptions options)
      : port_(options.worker.listen_port),
        client_password_(options.worker.client_password),
        proxy_(std::make_unique<proxy::Proxy>(options)) {
    thread_ = std::thread([this] {
      status_ = proxy_->Run();
      done_.store(true);
    });
  }

  // Serving: the listener accepts and the worker has a topology. False if Run() failed (port
  // taken) or the topology never arrived.
  bool WaitServing() {
    bool up = WaitUntil([&] {
      if (done_.load()) return true;
      migration::RedisClientOptions o;
      o.connect_timeout = milliseconds(200);
      return migration::RedisClient::Connect("127.0.0.1", port_, o).ok();
    });
    if (!up || done_.load()) {
      Stop();
      return false;
    }
    bool ready = WaitUntil([&] { return TopologyVersion() > 0; });
    EXPECT_TRUE(ready) << "no topology installed";
    return ready;
  }

  uint16_t port_;
  std::string client_password_;
  std::unique_ptr<proxy::Proxy> proxy_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  absl::Status status_;
};

// A raw TCP client for byte-exact and malformed-input cases. Every read is bounded.
class RawClient {
 public:
  explicit RawClient(uint16_t port, int rcvbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    EXPECT_TRUE(connected_) << "connect: " << strerror(errno);
  }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `n` bytes have arrived, the peer closes, or `timeout` passes.
  std::string ReadBytes(size_t n, milliseconds timeout = milliseconds(3000)) {
    std::string out;
    auto deadline = Clock::now() + timeout;
    while (out.size() < n && !closed_) {
      if (!ReadSome(&out, deadline)) break;
    }
    return out;
  }

  // Reads until the peer closes (true) or `timeout` passes (false); data goes to *out.
  bool ReadUntilClosed(std::string* out, milliseconds timeout = milliseconds(3000)) {
    auto deadline = Clock::now() + timeout;
    while (!closed_) {
      if (!ReadSome(out, deadline)) break;
    }
    return closed_;
  }

  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  // One poll + read; false on timeout.
  bool ReadSome(std::string* out, Clock::time_point deadline) {
    int64_t left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      closed_ = true;  // EOF or reset
      return true;
    }
    out->append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

}  // namespace slotpilot::testing

#endif  // SLOTPILOT_TESTS_UNIT_PROXY_PROXY_HARNESS_H_
