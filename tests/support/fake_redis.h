// Test support: a scriptable fake Redis cluster node on 127.0.0.1, for faults a real server cannot
// be made to produce on cue (garbage replies, stalls, endless redirects, dropped connections).
//
// Each FakeRedisNode listens on a kernel-chosen port and serves any number of connections from its
// own thread (one poll() loop). Requests are framed with protocol::RequestParser (multibulk and
// inline). Every command is logged, then answered by the script (the handler); a handler that
// returns FakeAction::Default(), or no handler, gets the built-ins:
//   PING, ECHO, ASKING (+OK), QUIT, AUTH (checked when SetPassword() was called, else +OK),
//   INFO [section] (redis_version:7.0.15), CLUSTER SLOTS (from SetSlots()), and an in-memory
//   string store: GET, SET key value, DEL key..., EXISTS key.... Anything else: Redis's
//   "ERR unknown command" text. A request the parser rejects gets "-ERR Protocol error: ..."
//   and the connection is closed, as Redis does.
//
// Replies on one connection leave in request order, like a real server: a delayed or held reply
// also holds back every reply after it on that connection.
//
// Threads: every public method may be called from any thread. The handler runs on the node's
// thread without the node's lock held, so it may call the node's accessors; whatever else it
// touches must be thread-safe (atomics, or the test's own mutex).
#ifndef SLOTPILOT_TESTS_SUPPORT_FAKE_REDIS_H_
#define SLOTPILOT_TESTS_SUPPORT_FAKE_REDIS_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"

namespace slotpilot::testing {

class FakeRedisNode;

// One command as the node received it.
struct FakeCommand {
  std::vector<std::string> argv;
  uint64_t connection_id = 0;  // 1, 2, ... in accept order, per node
  bool asking = false;         // the previous command on this connection was ASKING
  bool inline_request = false; // sent as an inline (telnet-style) line rather than RESP
  std::chrono::steady_clock::time_point received_at;

  // argv[0] (and argv[1] when `sub` is given) equal these, ignoring case.
  bool Is(std::string_view name, std::string_view sub = {}) const;
};

// What the node does with one command. Built with the factories, then optionally modified:
//   FakeAction::Error("MOVED 12 127.0.0.1:7001")
//   FakeAction::Bulk("v").Delayed(std::chrono::milliseconds(200))
//   FakeAction::Default().Held()          // the built-in reply, sent once ReleaseHeld() is called
//   FakeAction::Status("OK").ThenClose()
class FakeAction {
 public:
  static FakeAction Default();                      // the built-in behaviour
  static FakeAction Raw(std::string bytes);         // exactly these bytes (may be garbage)
  static FakeAction Status(std::string_view text);  // +text
  static FakeAction Error(std::string_view text);   // -text
  static FakeAction Bulk(std::string_view value);   // $n value
  static FakeAction Integer(int64_t value);         // :value
  static FakeAction Nil();                          // $-1
  static FakeAction Array(const std::vector<std::string>& bulks);
  // Never answers; every later reply on this connection waits forever too (a hung server).
  static FakeAction Stall();
  // Answers nothing and closes the connection (once earlier replies on it are sent).
  static FakeAction Close();

  // Sent no earlier than `delay` after the command arrived.
  FakeAction Delayed(std::chrono::milliseconds delay) const;
  // Sent only once FakeRedisNode::ReleaseHeld() is called (or SetStalled(false)).
  FakeAction Held() const;
  // Closes the connection right after this reply is written.
  FakeAction ThenClose() const;

 private:
  friend class FakeRedisNode;
  enum class Kind : uint8_t { kDefault, kReply, kStall, kClose };
  explicit FakeAction(Kind kind, std::string bytes = {}) : kind_(kind), bytes_(std::move(bytes)) {}

  Kind kind_;
  std::string bytes_;
  std::chrono::milliseconds delay_{0};
  bool held_ = false;
  bool close_after_ = false;
};

// One range of the layout CLUSTER SLOTS reports: slots [first, last] served by host:port.
struct FakeSlotRange {
  FakeSlotRange(int first, int last, const FakeRedisNode& node);
  FakeSlotRange(int first, int last, std::string host, uint16_t port)
      : first(first), last(last), host(std::move(host)), port(port) {}
  int first;
  int last;
  std::string host;  // as CLUSTER SLOTS sends it ("" and "?" are allowed)
  uint16_t port;
};

class FakeRedisNode {
 public:
  using Command = FakeCommand;
  using Action = FakeAction;
  using Handler = std::function<FakeAction(const FakeCommand&)>;

  // Binds 127.0.0.1:0 and starts serving.
  static absl::StatusOr<std::unique_ptr<FakeRedisNode>> Start();
  ~FakeRedisNode();  // closes every connection and joins the thread
  FakeRedisNode(const FakeRedisNode&) = delete;
  FakeRedisNode& operator=(const FakeRedisNode&) = delete;

  uint16_t port() const { return port_; }
  static std::string host() { return "127.0.0.1"; }
  std::string address() const;  // "127.0.0.1:port"
  // The 40-hex-digit node id CLUSTER SLOTS reports for host:port.
  static std::string NodeId(std::string_view host, uint16_t port);

  // ---- script ----
  void SetHandler(Handler handler);
  void SetSlots(std::vector<FakeSlotRange> layout);
  // Non-empty: every command but AUTH gets -NOAUTH until AUTH succeeds on its connection, and a
  // wrong password gets -WRONGPASS. Empty (default): AUTH always answers +OK.
  void SetPassword(std::string password);

  // ---- store ----
  std::optional<std::string> Get(const std::string& key) const;
  void Set(const std::string& key, std::string value);

  // ---- faults ----
  // While stalled, every reply (built-in or scripted) is held; SetStalled(false) releases them.
  void SetStalled(bool stalled);
  // Sends every held reply and ends a stall.
  void ReleaseHeld();
  // Closes every open connection at once (replies not yet sent are lost).
  void KillConnections();
  // Closes the listening socket: new connections are refused. StartListening() rebinds the port.
  void StopListening();
  absl::Status StartListening();

  // ---- observation ----
  std::vector<FakeCommand> Commands() const;  // every command, in arrival order
  std::vector<FakeCommand> CommandsOn(uint64_t connection_id) const;
  // Commands matching FakeCommand::Is(name, sub).
  size_t CountCommands(std::string_view name, std::string_view sub = {}) const;
  size_t CountIf(const std::function<bool(const FakeCommand&)>& predicate) const;
  void ClearLog();
  size_t connections_accepted() const { return accepted_.load(); }
  size_t open_connections() const { return open_.load(); }

 private:
  struct Connection;

  FakeRedisNode() = default;
  absl::Status Bind(int* fd);
  void Run();
  // Runs fn on the loop thread and waits for it (inline when called from the loop thread).
  void RunOnLoop(const std::function<void()>& fn);
  void RunTasks();
  int PollTimeoutMs() const;
  void AcceptAll();
  void ReadFrom(Connection* c);
  void HandleCommand(Connection* c, std::vector<std::string> argv, bool is_inline);
  FakeAction BuiltIn(Connection* c, const FakeCommand& cmd);
  FakeAction Store(const FakeCommand& cmd);
  FakeAction ClusterSlotsReply();
  void QueueReply(Connection* c, const FakeAction& action, std::chrono::steady_clock::time_point at);
  void ReleaseDueReplies(Connection* c);
  void WriteTo(Connection* c);
  void CloseConnection(Connection* c);
  void Wake();

  uint16_t port_ = 0;
  int wake_fds_[2] = {-1, -1};
  std::thread thread_;
  std::thread::id loop_thread_id_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> accepted_{0};
  std::atomic<size_t> open_{0};

  // Loop thread only (and Start() before the thread exists).
  int listen_fd_ = -1;
  uint64_t next_connection_id_ = 1;
  std::vector<std::unique_ptr<Connection>> conns_;

  mutable std::mutex mu_;
  Handler handler_ ABSL_GUARDED_BY(mu_);
  std::vector<FakeSlotRange> layout_ ABSL_GUARDED_BY(mu_);
  std::string password_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> store_ ABSL_GUARDED_BY(mu_);
  std::vector<FakeCommand> log_ ABSL_GUARDED_BY(mu_);
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t tasks_done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tasks_posted_ ABSL_GUARDED_BY(mu_) = 0;
  std::condition_variable tasks_cv_;
};

// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns its last
// value. The bounded wait the data-path tests use instead of sleeps.
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

}  // namespace slotpilot::testing

#endif  // SLOTPILOT_TESTS_SUPPORT_FAKE_REDIS_H_
