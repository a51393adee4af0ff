// One pipelined connection from a worker to one Redis node. Requests are written in order
// (gathered into one write per loop turn) and replies are matched to them first-in first-out.
//
// Connection states: idle -> connecting -> ready; on any failure every request in flight is
// answered with an error, and the node enters a backoff during which new requests fail fast
// instead of piling up. Loop thread only; owned by its Worker for the worker's lifetime.
#ifndef SLOTPILOT_PROXY_UPSTREAM_H_
#define SLOTPILOT_PROXY_UPSTREAM_H_

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "protocol/reply_parser.h"
#include "proxy/input_buffer.h"
#include "proxy/request.h"
#include "proxy/ring_buffer.h"

namespace slotpilot::proxy {

class Upstream;
class Worker;

// Receives what a pub/sub connection's server pushes (subscription replies and messages), in order.
class PushSink {
 public:
  virtual ~PushSink() = default;
  virtual void OnPush(Upstream* from, const protocol::ReplyFrame& frame, Slice bytes) = 0;
  // The connection failed; `reason` says why.
  virtual void OnPushConnectionLost(Upstream* from, std::string_view reason) = 0;
};

class Upstream {
 public:
  enum class State : uint8_t { kIdle, kResolving, kConnecting, kReady, kBackoff };
  enum class Role : uint8_t {
    kShared,     // the worker's pipelined connection to a node, shared by every client
    kDedicated,  // one client's own (a transaction, or blocking commands)
    kPubSub,     // one client's subscribed connection: every frame goes to the PushSink
  };

  Upstream(Worker* worker, uint16_t node, std::string host, uint16_t port,
           Role role = Role::kShared, PushSink* push_sink = nullptr);
  ~Upstream();
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // Queues r for this node (preceded by ASKING when r->asking). Answers r at once with an error
  // when the node is in backoff or its queue is full.
  void Send(Request* r);
  // kPubSub only: queues a (P|S)(UN)SUBSCRIBE command. What the server answers arrives through
  // the PushSink, since subscribed mode has no request/reply pairing. Fails when the node is in
  // reconnect backoff.
  absl::Status SendSubscriberCommand(std::string_view command);
  // Writes everything queued since the last flush (called once per loop turn).
  void Flush();
  // Drops the connection and answers everything in flight with `reason` (a failure: the node
  // enters reconnect backoff and a topology refresh is requested).
  void Close(std::string_view reason);
  // Drops the connection quietly (a dedicated connection released, or shutdown): no backoff,
  // no refresh. Safe inside this upstream's own callbacks; the object stays valid.
  void Shutdown(std::string_view reason);

  State state() const { return state_; }
  uint16_t node() const { return node_; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  size_t in_flight() const { return inflight_.size(); }
  // Worker's sweep: a shared connection whose oldest request has had no reply for `limit_ms` is
  // stalled; the worker moves new requests to a fresh connection so a node that stopped answering
  // (or a blackholed connection) does not keep every later request waiting behind it.
  bool Stalled(uint64_t now_ms, uint64_t limit_ms) const;
  // Some request on this connection still waits for its reply (not yet answered at its deadline).
  bool HasLiveRequests() const;
  Role role() const { return role_; }
  bool dirty = false;  // in the worker's dirty list

 private:
  struct Connection;
  struct Entry {
    Request* request = nullptr;  // null for ASKING and AUTH, whose replies are ours
    uint64_t queued_ms = 0;      // when it was queued (uv_now)
    enum class Kind : uint8_t { kClient, kAsking, kAuth } kind = Kind::kClient;
  };

  void StartConnect();
  void Connect(const struct sockaddr* addr);
  void OnConnected(int status);
  void OnResolved(int status, struct addrinfo* res);
  void OnReadable(ssize_t nread);
  void OnFrame(const protocol::ReplyFrame& frame);
  void HandleInternalReply(Entry::Kind kind, const protocol::ReplyFrame& frame);
  void FailAll(std::string_view reason);
  void EnterBackoff(std::string_view reason);
  void BuildWriteBuffers(size_t first_entry);

  static void OnConnectCb(uv_connect_t* req, int status);
  static void OnResolveCb(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
  static void OnAllocCb(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnReadCb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWriteCb(uv_write_t* req, int status);
  static void OnConnectTimeoutCb(uv_timer_t* timer);

  Worker* worker_;
  const Role role_;
  PushSink* push_sink_;
  const uint16_t node_;
  const std::string host_;
  const uint16_t port_;
  const std::string address_;
  std::string auth_command_;  // RESP AUTH, empty when the cluster needs none

  State state_ = State::kIdle;
  Connection* conn_ = nullptr;  // the live connection attempt, owned until its close callback
  uv_getaddrinfo_t* resolve_ = nullptr;
  uint64_t backoff_ms_ = 0;
  uint64_t retry_at_ms_ = 0;
  std::string last_error_;

  RingBuffer<Entry> inflight_;  // written or queued, oldest first
  size_t unsent_ = 0;           // entries at the back of inflight_ not yet handed to the socket
  std::string pubsub_out_;      // kPubSub: commands to write (they expect no paired reply)
  InputBuffer input_;
  protocol::ReplyFramer framer_;
  std::vector<uv_buf_t> iov_;   // scratch for gathered writes
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_UPSTREAM_H_
