#include "tests/support/fake_redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "protocol/request_parser.h"
#include "protocol/resp.h"
#include "protocol/strings.h"

namespace slotpilot::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxPollWaitMs = 50;  // also bounds how late a Delayed() reply can be
constexpr size_t kReadChunk = 64 * 1024;

// Set while a node's loop thread runs, so RunOnLoop() called from a handler runs inline.
thread_local const FakeRedisNode* tls_loop_owner = nullptr;

std::string Encode(void (*append)(std::string*, std::string_view), std::string_view text) {
  std::string out;
  append(&out, text);
  return out;
}

std::string UnknownCommandError(const std::vector<std::string>& argv) {
  std::string out = StrCat("ERR unknown command '", argv[0], "', with args beginning with: ");
  for (size_t i = 1; i < argv.size(); ++i) StrAppend(&out, "'", argv[i], "' ");
  return out;
}

std::string ArityError(const std::string& name) {
  return StrCat("ERR wrong number of arguments for '", ToLower(name), "' command");
}

}  // namespace

// ---- FakeCommand / FakeAction / FakeSlotRange ----

bool FakeCommand::Is(std::string_view name, std::string_view sub) const {
  if (argv.empty() || !EqualsIgnoreCase(argv[0], name)) return false;
  if (sub.empty()) return true;
  return argv.size() > 1 && EqualsIgnoreCase(argv[1], sub);
}

FakeAction FakeAction::Default() { return FakeAction(Kind::kDefault); }
FakeAction FakeAction::Raw(std::string bytes) { return FakeAction(Kind::kReply, std::move(bytes)); }
FakeAction FakeAction::Status(std::string_view text) {
  return Raw(Encode(protocol::AppendStatus, text));
}
FakeAction FakeAction::Error(std::string_view text) {
  return Raw(Encode(protocol::AppendError, text));
}
FakeAction FakeAction::Bulk(std::string_view value) {
  return Raw(Encode(protocol::AppendBulk, value));
}
FakeAction FakeAction::Integer(int64_t value) {
  std::string out;
  protocol::AppendInteger(&out, value);
  return Raw(std::move(out));
}
FakeAction FakeAction::Nil() { return Raw("$-1\r\n"); }
FakeAction FakeAction::Array(const std::vector<std::string>& bulks) {
  std::string out;
  protocol::AppendArrayHeader(&out, static_cast<int64_t>(bulks.size()));
  for (const std::string& b : bulks) protocol::AppendBulk(&out, b);
  return Raw(std::move(out));
}
FakeAction FakeAction::Stall() { return FakeAction(Kind::kStall); }
FakeAction FakeAction::Close() { return FakeAction(Kind::kClose); }

FakeAction FakeAction::Delayed(std::chrono::milliseconds delay) const {
  FakeAction a = *this;
  a.delay_ = delay;
  return a;
}
FakeAction FakeAction::Held() const {
  FakeAction a = *this;
  a.held_ = true;
  return a;
}
FakeAction FakeAction::ThenClose() const {
  FakeAction a = *this;
  a.close_after_ = true;
  return a;
}

FakeSlotRange::FakeSlotRange(int first, int last, const FakeRedisNode& node)
    : FakeSlotRange(first, last, FakeRedisNode::host(), node.port()) {}

// ---- connections ----

struct FakeRedisNode::Connection {
  struct Pending {
    std::string bytes;
    Clock::time_point not_before;
    bool held = false;
    bool stall = false;        // never leaves: blocks the connection for good
    bool close_after = false;  // close once `bytes` (possibly none) are written
  };

  int fd = -1;
  uint64_t id = 0;
  std::string in;
  protocol::RequestParser parser;
  std::deque<Pending> queue;      // replies in request order, not yet due
  std::string out;                // due bytes; out[0, out_sent) are already written
  size_t out_sent = 0;
  bool close_when_flushed = false;
  bool previous_was_asking = false;
  bool authenticated = false;
  bool closed = false;
};

// ---- lifecycle ----

absl::StatusOr<std::unique_ptr<FakeRedisNode>> FakeRedisNode::Start() {
  std::unique_ptr<FakeRedisNode> node(new FakeRedisNode());
  absl::Status bound = node->Bind(&node->listen_fd_);
  if (!bound.ok()) return bound;
  if (pipe2(node->wake_fds_, O_NONBLOCK | O_CLOEXEC) != 0) {
    return absl::InternalError(StrCat("pipe2: ", strerror(errno)));
  }
  FakeRedisNode* raw = node.get();
  node->thread_ = std::thread([raw] { raw->Run(); });
  return node;
}

// Binds 127.0.0.1:port_ (0 the first time: the kernel picks, and port_ learns it).
absl::Status FakeRedisNode::Bind(int* fd_out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(StrCat("fake redis: cannot listen on port ", port_, ": ", strerror(err)));
  }
  if (port_ == 0) {  // first bind (before the loop thread exists): learn the kernel's choice
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  *fd_out = fd;
  return absl::OkStatus();
}

FakeRedisNode::~FakeRedisNode() {
  stop_.store(true);
  Wake();
  if (thread_.joinable()) thread_.join();
  for (auto& c : conns_) {
    if (c->fd >= 0) close(c->fd);
  }
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_fds_) {
    if (fd >= 0) close(fd);
  }
  std::lock_guard<std::mutex> lock(mu_);
  tasks_cv_.notify_all();
}

void FakeRedisNode::Wake() {
  char b = 1;
  if (wake_fds_[1] >= 0) (void)!write(wake_fds_[1], &b, 1);
}

void FakeRedisNode::RunOnLoop(const std::function<void()>& fn) {
  if (tls_loop_owner == this) {
    fn();
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t ticket = ++tasks_posted_;
  tasks_.push_back(fn);
  Wake();
  tasks_cv_.wait(lock, [&] { return tasks_done_ >= ticket || stop_.load(); });
}

void FakeRedisNode::RunTasks() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(tasks_);
  }
  if (tasks.empty()) return;
  for (auto& fn : tasks) fn();
  std::lock_guard<std::mutex> lock(mu_);
  tasks_done_ += tasks.size();
  tasks_cv_.notify_all();
}

// ---- the loop ----

void FakeRedisNode::Run() {
  tls_loop_owner = this;
  std::vector<pollfd> fds;
  while (!stop_.load()) {
    fds.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});  // a negative fd is ignored by poll()
    size_t first_conn = fds.size();
    for (auto& c : conns_) {
      short events = POLLIN;
      if (c->out_sent < c->out.size()) events |= POLLOUT;
      fds.push_back({c->fd, events, 0});
    }
    poll(fds.data(), fds.size(), PollTimeoutMs());
    char drain[64];
    while (read(wake_fds_[0], drain, sizeof(drain)) > 0) {
    }
    RunTasks();
    if (fds[1].fd >= 0 && fds[1].fd == listen_fd_ && (fds[1].revents & POLLIN)) AcceptAll();
    size_t polled = fds.size() - first_conn;
    for (size_t i = 0; i < polled && i < conns_.size(); ++i) {
      Connection* c = conns_[i].get();
      if (!c->closed && c->fd == fds[first_conn + i].fd &&
          (fds[first_conn + i].revents & (POLLIN | POLLHUP | POLLERR))) {
        ReadFrom(c);
      }
    }
    for (auto& c : conns_) {
      if (c->closed) continue;
      ReleaseDueReplies(c.get());
      WriteTo(c.get());
    }
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](auto& c) { return c->closed; }),
                 conns_.end());
  }
  tls_loop_owner = nullptr;
}

// Until the earliest delayed reply is due, at most kMaxPollWaitMs.
int FakeRedisNode::PollTimeoutMs() const {
  auto now = Clock::now();
  int64_t wait = kMaxPollWaitMs;
  for (const auto& c : conns_) {
    if (c->queue.empty()) continue;
    const Connection::Pending& head = c->queue.front();
    if (head.held || head.stall) continue;
    auto due = std::chrono::duration_cast<std::chrono::milliseconds>(head.not_before - now).count();
    wait = std::min<int64_t>(wait, std::max<int64_t>(due, 0));
  }
  return static_cast<int>(wait);
}

void FakeRedisNode::AcceptAll() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->id = next_connection_id_++;
    conns_.push_back(std::move(c));
    accepted_.fetch_add(1);
    open_.fetch_add(1);
  }
}

void FakeRedisNode::ReadFrom(Connection* c) {
  char buf[kReadChunk];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof(buf));
    if (n > 0) {
      c->in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    CloseConnection(c);  // EOF or error
    return;
  }
  size_t offset = 0;
  while (!c->closed && !c->close_when_flushed && offset < c->in.size()) {
    std::string_view data(c->in.data() + offset, c->in.size() - offset);
    protocol::ParseResult res = c->parser.Parse(data);
    if (res.status == protocol::ParseStatus::kNeedMore) break;
    if (res.status == protocol::ParseStatus::kError) {
      QueueReply(c, FakeAction::Error(StrCat("ERR ", res.error)).ThenClose(), Clock::now());
      offset = c->in.size();
      break;
    }
    std::vector<std::string> argv;
    for (size_t i = 0; i < c->parser.args().size(); ++i) argv.emplace_back(c->parser.Arg(data, i));
    offset += res.consumed;
    if (!argv.empty()) HandleCommand(c, std::move(argv), c->parser.is_inline());
  }
  c->in.erase(0, offset);
}

void FakeRedisNode::HandleCommand(Connection* c, std::vector<std::string> argv, bool is_inline) {
  FakeCommand cmd;
  cmd.argv = std::move(argv);
  cmd.inline_request = is_inline;
  cmd.connection_id = c->id;
  cmd.asking = c->previous_was_asking;
  cmd.received_at = Clock::now();
  c->previous_was_asking = cmd.Is("ASKING");
  Handler handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(cmd);
    handler = handler_;
  }
  FakeAction action = handler ? handler(cmd) : FakeAction::Default();
  if (action.kind_ == FakeAction::Kind::kDefault) {
    FakeAction built_in = BuiltIn(c, cmd);
    built_in.delay_ = action.delay_;
    built_in.held_ = built_in.held_ || action.held_;
    built_in.close_after_ = built_in.close_after_ || action.close_after_;
    action = std::move(built_in);
  }
  QueueReply(c, action, cmd.received_at);
}

void FakeRedisNode::QueueReply(Connection* c, const FakeAction& action, Clock::time_point at) {
  Connection::Pending p;
  p.bytes = action.bytes_;
  p.not_before = at + action.delay_;
  p.stall = action.kind_ == FakeAction::Kind::kStall;
  p.close_after = action.close_after_ || action.kind_ == FakeAction::Kind::kClose;
  {
    std::lock_guard<std::mutex> lock(mu_);
    p.held = action.held_ || stalled_;
  }
  c->queue.push_back(std::move(p));
}

void FakeRedisNode::ReleaseDueReplies(Connection* c) {
  auto now = Clock::now();
  while (!c->queue.empty() && !c->close_when_flushed) {
    Connection::Pending& p = c->queue.front();
    if (p.stall || p.held || p.not_before > now) return;
    c->out.append(p.bytes);
    c->close_when_flushed = p.close_after;
    c->queue.pop_front();
  }
}

void FakeRedisNode::WriteTo(Connection* c) {
  while (c->out_sent < c->out.size()) {
    ssize_t n = send(c->fd, c->out.data() + c->out_sent, c->out.size() - c->out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Megabytes of replies may wait here: drop the written prefix only now and then.
      if (c->out_sent > (1u << 20)) {
        c->out.erase(0, c->out_sent);
        c->out_sent = 0;
      }
      return;
    }
    CloseConnection(c);
    return;
  }
  c->out.clear();
  c->out_sent = 0;
  if (c->close_when_flushed) CloseConnection(c);
}

void FakeRedisNode::CloseConnection(Connection* c) {
  if (c->closed) return;
  c->closed = true;
  close(c->fd);
  c->fd = -1;
  open_.fetch_sub(1);
}

// ---- built-ins ----

FakeAction FakeRedisNode::BuiltIn(Connection* c, const FakeCommand& cmd) {
  const std::vector<std::string>& argv = cmd.argv;
  std::string password;
  {
    std::lock_guard<std::mutex> lock(mu_);
    password = password_;
  }
  if (cmd.Is("AUTH")) {
    if (argv.size() < 2 || argv.size() > 3) return FakeAction::Error(ArityError("auth"));
    if (!password.empty() && argv.back() != password) {
      return FakeAction::Error("WRONGPASS invalid username-password pair or user is disabled.");
    }
    c->authenticated = true;
    return FakeAction::Status("OK");
  }
  if (!password.empty() && !c->authenticated) {
    return FakeAction::Error("NOAUTH Authentication required.");
  }
  if (cmd.Is("PING")) return argv.size() > 1 ? FakeAction::Bulk(argv[1]) : FakeAction::Status("PONG");
  if (cmd.Is("ECHO") && argv.size() == 2) return FakeAction::Bulk(argv[1]);
  if (cmd.Is("ASKING")) return FakeAction::Status("OK");
  if (cmd.Is("QUIT")) return FakeAction::Status("OK").ThenClose();
  if (cmd.Is("INFO")) {
    return FakeAction::Bulk(
        "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n\r\n# Cluster\r\n"
        "cluster_enabled:1\r\n");
  }
  if (cmd.Is("CLUSTER", "SLOTS")) return ClusterSlotsReply();
  return Store(cmd);
}

FakeAction FakeRedisNode::Store(const FakeCommand& cmd) {
  const std::vector<std::string>& argv = cmd.argv;
  std::lock_guard<std::mutex> lock(mu_);
  if (cmd.Is("GET")) {
    if (argv.size() != 2) return FakeAction::Error(ArityError(argv[0]));
    auto it = store_.find(argv[1]);
    return it == store_.end() ? FakeAction::Nil() : FakeAction::Bulk(it->second);
  }
  if (cmd.Is("SET")) {
    if (argv.size() < 3) return FakeAction::Error(ArityError(argv[0]));
    store_[argv[1]] = argv[2];
    return FakeAction::Status("OK");
  }
  if (cmd.Is("DEL") || cmd.Is("EXISTS")) {
    if (argv.size() < 2) return FakeAction::Error(ArityError(argv[0]));
    int64_t n = 0;
    for (size_t i = 1; i < argv.size(); ++i) {
      auto it = store_.find(argv[i]);
      if (it == store_.end()) continue;
      ++n;
      if (cmd.Is("DEL")) store_.erase(it);
    }
    return FakeAction::Integer(n);
  }
  return FakeAction::Error(UnknownCommandError(argv));
}

FakeAction FakeRedisNode::ClusterSlotsReply() {
  std::vector<FakeSlotRange> layout;
  {
    std::lock_guard<std::mutex> lock(mu_);
    layout = layout_;
  }
  std::string out;
  protocol::AppendArrayHeader(&out, static_cast<int64_t>(layout.size()));
  for (const FakeSlotRange& r : layout) {
    protocol::AppendArrayHeader(&out, 3);
    protocol::AppendInteger(&out, r.first);
    protocol::AppendInteger(&out, r.last);
    protocol::AppendArrayHeader(&out, 4);  // Redis 7: host, port, id, metadata
    protocol::AppendBulk(&out, r.host);
    protocol::AppendInteger(&out, r.port);
    protocol::AppendBulk(&out, NodeId(r.host, r.port));
    protocol::AppendArrayHeader(&out, 0);
  }
  return FakeAction::Raw(std::move(out));
}

// ---- public accessors and controls ----

std::string FakeRedisNode::address() const { return StrCat(host(), ":", port_); }

std::string FakeRedisNode::NodeId(std::string_view host, uint16_t port) {
  // FNV-1a over "host:port", stretched to 40 hex digits: stable and distinct per endpoint.
  std::string key = StrCat(host, ":", port);
  std::string id;
  uint64_t h = 1469598103934665603ull;
  while (id.size() < 40) {
    for (char ch : key) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    h = (h ^ id.size()) * 1099511628211ull;
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    id.append(hex);
  }
  id.resize(40);
  return id;
}

void FakeRedisNode::SetHandler(Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(handler);
}

void FakeRedisNode::SetSlots(std::vector<FakeSlotRange> layout) {
  std::lock_guard<std::mutex> lock(mu_);
  layout_ = std::move(layout);
}

void FakeRedisNode::SetPassword(std::string password) {
  std::lock_guard<std::mutex> lock(mu_);
  password_ = std::move(password);
}

std::optional<std::string> FakeRedisNode::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = store_.find(key);
  if (it == store_.end()) return std::nullopt;
  return it->second;
}

void FakeRedisNode::Set(const std::string& key, std::string value) {
  std::lock_guard<std::mutex> lock(mu_);
  store_[key] = std::move(value);
}

void FakeRedisNode::SetStalled(bool stalled) {
  if (!stalled) {
    ReleaseHeld();
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  stalled_ = true;
}

void FakeRedisNode::ReleaseHeld() {
  RunOnLoop([this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stalled_ = false;
    }
    for (auto& c : conns_) {
      for (Connection::Pending& p : c->queue) p.held = false;
    }
  });
}

void FakeRedisNode::KillConnections() {
  RunOnLoop([this] {
    for (auto& c : conns_) CloseConnection(c.get());
  });
}

void FakeRedisNode::StopListening() {
  RunOnLoop([this] {
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
  });
}

absl::Status FakeRedisNode::StartListening() {
  int fd = -1;
  absl::Status bound = Bind(&fd);
  if (!bound.ok()) return bound;
  RunOnLoop([this, fd] {
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = fd;
  });
  return absl::OkStatus();
}

std::vector<FakeCommand> FakeRedisNode::Commands() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

std::vector<FakeCommand> FakeRedisNode::CommandsOn(uint64_t connection_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FakeCommand> out;
  for (const FakeCommand& c : log_) {
    if (c.connection_id == connection_id) out.push_back(c);
  }
  return out;
}

size_t FakeRedisNode::CountCommands(std::string_view name, std::string_view sub) const {
  return CountIf([&](const FakeCommand& c) { return c.Is(name, sub); });
}

size_t FakeRedisNode::CountIf(const std::function<bool(const FakeCommand&)>& predicate) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(std::count_if(log_.begin(), log_.end(), predicate));
}

void FakeRedisNode::ClearLog() {
  std::lock_guard<std::mutex> lock(mu_);
  log_.clear();
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace slotpilot::testing
