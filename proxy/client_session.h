// One application connection. Frames requests in place from its read buffer, hands each to the
// Dispatcher, and writes replies strictly in request order however they complete, gathered into
// one write per loop turn.
//
// Limits: at most max_pending_per_client requests in flight (then reading pauses: TCP
// backpressure), client_max_input_bytes for one incomplete request, client_max_output_bytes of
// replies buffered, each counted whole until written (then it is disconnected). EXEC, WATCH and
// blocking commands are ordering points (IsOrderingPoint): dispatched after every earlier
// request is answered, and before any later one.
//
// Lifetime: created by its Worker on accept; Close() starts closing and the object deletes itself
// in the close callback (never inside one of its own callbacks). Requests still in flight when it
// closes live on without it (Request::session = nullptr). Loop thread only.
#ifndef SLOTPILOT_PROXY_CLIENT_SESSION_H_
#define SLOTPILOT_PROXY_CLIENT_SESSION_H_

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/request_parser.h"
#include "proxy/client_registry.h"
#include "proxy/input_buffer.h"
#include "proxy/request.h"
#include "proxy/ring_buffer.h"

namespace slotpilot::proxy {

class PubSubRelay;
class Transaction;
class Upstream;
class Worker;

class ClientSession {
 public:
  ClientSession(Worker* worker, uint64_t id);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  uv_tcp_t* tcp() { return &tcp_; }
  // Starts reading after the worker accepted the connection.
  void Start();

  // Dispatcher: r joins this client's reply order (the session holds a reference until written).
  void Enqueue(Request* r);
  // Worker: r was answered; replies that are now in order get queued for writing.
  void OnRequestDone(Request* r);
  // Worker, once per loop turn: writes queued replies.
  void Flush();

  void Close(std::string_view why);
  // QUIT and protocol errors: read nothing more, close once every reply is written.
  void CloseAfterReplies();
  // Shutdown: read nothing more, close when every reply is written.
  void BeginDrain();
  bool closing() const { return closing_; }

  // Worker's periodic sweep: closes idle or slowloris connections.
  void Sweep(uint64_t now_ms);

  // MULTI/EXEC state (created on first use).
  Transaction& transaction();
  bool in_transaction() const;
  // Subscribed-mode state (created on first use).
  PubSubRelay& pubsub();
  bool subscribed() const;
  // This client's own connection to `node` for blocking commands (created on demand).
  Upstream* DedicatedUpstream(uint16_t node);
  // Releases dedicated connections with nothing in flight (after a blocking command returns).
  void ReleaseIdleDedicated();
  // RESET: leaves subscribed mode, discards the transaction, forgets name and authentication.
  void ResetState();

  // Per-connection state of proxy-served commands.
  uint64_t id() const { return id_; }
  bool authenticated = false;
  std::string name;  // CLIENT SETNAME (set it with SetName: the registry keeps a copy)
  void SetName(std::string_view new_name);
  // This client's row in the process-wide registry (CLIENT LIST); in it from Start() to close.
  ClientRow& row() { return row_; }
  uint64_t retry_batch_due_ms = 0;  // when this client's requests waiting for a retry are resent
  // Requests of this client that needed a retry and are not answered yet. While any is, newer
  // requests are parked here (in order) instead of sent: one sent behind a retried command on the
  // same connection could otherwise run first (CLUSTERDOWN for the one, OK for the next).
  uint32_t retries_unresolved = 0;
  bool has_parked() const { return !parked_.empty(); }
  void Park(Request* r);   // holds a reference until unparked
  void UnparkAll();        // when retries_unresolved dropped to 0: route parked ones in order
  int32_t last_write_node = -1;  // node of the last write (WAIT asks there)
  // Requests of this client waiting for throttle budget (ThrottleGate); reading pauses meanwhile.
  uint32_t throttle_waiting = 0;
  // ThrottleGate, when throttle_waiting dropped to 0: read (and dispatch) again.
  void ResumeAfterThrottle() { MaybeResumeReading(); }
  uint64_t created_ms = 0;
  uint64_t last_activity_ms = 0;
  std::string peer;  // "ip:port"

  bool dirty = false;        // in the worker's dirty list
  size_t worker_index = 0;   // position in the worker's session list

 private:
  struct WriteReq;

  void ProcessInput();
  void Register();
  void RefreshRow();
  bool DispatchOne(std::string_view data, const protocol::ParseResult& res);
  void FailProtocol(std::string_view error);
  void PauseReading();
  void MaybeResumeReading();
  void MaybeFinishClosing();
  size_t in_flight() const { return pending_.size() + ready_.size() + writing_.size(); }
  void OnReadable(ssize_t nread);
  void OnWritten(WriteReq* w, int status);

  static void OnAllocCb(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnReadCb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWriteCb(uv_write_t* req, int status);
  static void OnCloseCb(uv_handle_t* handle);

  Worker* worker_;
  const uint64_t id_;
  uv_tcp_t tcp_;
  InputBuffer input_;
  protocol::RequestParser parser_;
  RingBuffer<Request*> pending_;  // in request order, not all answered yet
  RingBuffer<Request*> ready_;    // answered, in order, not yet handed to the socket
  RingBuffer<Request*> writing_;  // handed to uv_write, waiting for its callback
  RingBuffer<Request*> parked_;   // waiting for this client's retries to resolve (see Park)
  size_t output_bytes_ = 0;       // reply bytes in ready_ and writing_
  uint64_t partial_since_ms_ = 0; // when the current incomplete request started (0: none)
  bool reading_ = false;
  bool read_paused_ = false;
  bool closing_ = false;
  bool close_after_replies_ = false;
  // An ordering point (IsOrderingPoint) is dispatched, or waits to be: no other request is
  // dispatched until every request before it is answered.
  bool ordering_wait_ = false;
  std::vector<uv_buf_t> iov_;
  std::unique_ptr<Transaction> transaction_;
  std::unique_ptr<PubSubRelay> pubsub_;
  std::map<uint16_t, std::unique_ptr<Upstream>> dedicated_;  // blocking commands, by node
  ClientRow row_;
  bool registered_ = false;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_CLIENT_SESSION_H_
