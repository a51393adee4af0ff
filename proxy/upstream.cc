#include "proxy/upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cassert>
#include <random>

#include "protocol/strings.h"
#include "protocol/resp.h"
#include "proxy/logging.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

constexpr std::string_view kAskingCommand = "*1\r\n$6\r\nASKING\r\n";

uv_buf_t MakeBuf(const char* data, size_t len) {
  return uv_buf_init(const_cast<char*>(data), static_cast<unsigned int>(len));
}

}  // namespace

// The handles of one connection attempt. Freed in the close callback of the last of them, so
// callbacks that fire after Close() find `owner == nullptr` and do nothing.
struct Upstream::Connection {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_timer_t connect_timer;
  Upstream* owner = nullptr;
  int open_handles = 0;

  void CloseHandles() {
    owner = nullptr;
    auto on_close = [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      if (--c->open_handles == 0) delete c;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_close);
    uv_close(reinterpret_cast<uv_handle_t*>(&connect_timer), on_close);
  }
};

Upstream::Upstream(Worker* worker, uint16_t node, std::string host, uint16_t port, Role role,
                   PushSink* push_sink)
    : worker_(worker),
      role_(role),
      push_sink_(push_sink),
      node_(node),
      host_(std::move(host)),
      port_(port),
      address_(FormatAddress(host_, port_)),
      input_(&worker->blocks()),
      framer_(/*retain_buffer_bytes=*/1u << 20) {
  const WorkerOptions& o = worker_->options();
  if (!o.upstream_password.empty()) {
    if (o.upstream_user.empty()) {
      protocol::AppendCommand(&auth_command_, {"AUTH", o.upstream_password});
    } else {
      protocol::AppendCommand(&auth_command_, {"AUTH", o.upstream_user, o.upstream_password});
    }
  }
}

Upstream::~Upstream() { Shutdown("proxy shutting down"); }

void Upstream::Shutdown(std::string_view reason) {
  if (resolve_ != nullptr) {
    uv_cancel(reinterpret_cast<uv_req_t*>(resolve_));
    resolve_->data = nullptr;  // its callback frees it
    resolve_ = nullptr;
  }
  if (conn_ != nullptr) {
    conn_->CloseHandles();
    conn_ = nullptr;
  }
  if (state_ == State::kReady) worker_->stats().upstream_connections.Add(-1);
  state_ = State::kIdle;
  FailAll(reason);
}

void Upstream::Send(Request* r) {
  const WorkerOptions& o = worker_->options();
  if (inflight_.size() >= o.upstream_max_pending) {
    worker_->CompleteWithError(
        r, StrCat("ERR slotpilot: too many requests queued for node ", address_));
    return;
  }
  if (state_ == State::kBackoff && worker_->now_ms() >= retry_at_ms_) state_ = State::kIdle;
  if (state_ == State::kIdle) StartConnect();
  if (state_ == State::kBackoff) {
    worker_->stats().upstream_unreachable_fast_fails.Add();
    worker_->CompleteWithError(
        r, StrCat("ERR slotpilot: node ", address_, " is unreachable: ", last_error_));
    return;
  }
  worker_->Retain(r);
  r->state = RequestState::kInFlight;
  r->node = node_;
  if (r->asking) {
    inflight_.push_back(Entry{nullptr, worker_->now_ms(), Entry::Kind::kAsking});
    ++unsent_;
    r->asking = false;
  }
  assert(role_ != Role::kPubSub && "subscribed connections take SendSubscriberCommand");
  inflight_.push_back(Entry{r, worker_->now_ms(), Entry::Kind::kClient});
  ++unsent_;
  if (state_ == State::kReady) worker_->MarkDirty(this);
}

absl::Status Upstream::SendSubscriberCommand(std::string_view command) {
  assert(role_ == Role::kPubSub);
  if (state_ == State::kBackoff && worker_->now_ms() >= retry_at_ms_) state_ = State::kIdle;
  if (state_ == State::kIdle) StartConnect();
  if (state_ == State::kBackoff) {
    return absl::UnavailableError(StrCat("ERR slotpilot: node ", address_, " is unreachable: ", last_error_));
  }
  pubsub_out_.append(command);
  if (state_ == State::kReady) worker_->MarkDirty(this);
  return absl::OkStatus();
}

bool Upstream::Stalled(uint64_t now_ms, uint64_t limit_ms) const {
  if (state_ != State::kReady || inflight_.empty() || role_ != Role::kShared) return false;
  return now_ms - inflight_[0].queued_ms > limit_ms;
}

bool Upstream::HasLiveRequests() const {
  for (size_t i = 0; i < inflight_.size(); ++i) {
    const Request* r = inflight_[i].request;
    if (r != nullptr && !r->answered()) return true;
  }
  return false;
}

void Upstream::StartConnect() {
  state_ = State::kConnecting;
  struct sockaddr_storage addr;
  if (uv_ip4_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
      uv_ip6_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
    Connect(reinterpret_cast<sockaddr*>(&addr));
    return;
  }
  state_ = State::kResolving;
  resolve_ = new uv_getaddrinfo_t;
  resolve_->data = this;
  struct addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(port_);
  int rc = uv_getaddrinfo(worker_->loop(), resolve_, OnResolveCb, host_.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete resolve_;
    resolve_ = nullptr;
    EnterBackoff(StrCat("cannot resolve ", host_, ": ", uv_strerror(rc)));
  }
}

void Upstream::OnResolveCb(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  auto* self = static_cast<Upstream*>(req->data);
  if (self != nullptr) {
    self->resolve_ = nullptr;
    self->OnResolved(status, res);
  }
  uv_freeaddrinfo(res);
  delete req;
}

void Upstream::OnResolved(int status, struct addrinfo* res) {
  if (status != 0 || res == nullptr) {
    FailAll(StrCat("cannot resolve ", host_, ": ", uv_strerror(status)));
    EnterBackoff(StrCat("cannot resolve ", host_, ": ", uv_strerror(status)));
    return;
  }
  state_ = State::kConnecting;
  Connect(res->ai_addr);
}

void Upstream::Connect(const struct sockaddr* addr) {
  auto* c = new Connection;
  c->owner = this;
  c->tcp.data = c;
  c->connect_timer.data = c;
  c->connect.data = c;
  uv_tcp_init(worker_->loop(), &c->tcp);
  uv_timer_init(worker_->loop(), &c->connect_timer);
  c->open_handles = 2;
  conn_ = c;
  int rc = uv_tcp_connect(&c->connect, &c->tcp, addr, OnConnectCb);
  if (rc != 0) {
    Close(StrCat("connect failed: ", uv_strerror(rc)));
    return;
  }
  uv_timer_start(&c->connect_timer, OnConnectTimeoutCb, worker_->options().connect_timeout_ms, 0);
}

void Upstream::OnConnectTimeoutCb(uv_timer_t* timer) {
  auto* c = static_cast<Connection*>(timer->data);
  if (c->owner != nullptr) c->owner->Close("connect timeout");
}

void Upstream::OnConnectCb(uv_connect_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  if (c->owner != nullptr) c->owner->OnConnected(status);
}

void Upstream::OnConnected(int status) {
  if (status != 0) {
    Close(StrCat("connect failed: ", uv_strerror(status)));
    return;
  }
  uv_timer_stop(&conn_->connect_timer);
  uv_tcp_nodelay(&conn_->tcp, 1);
  uv_tcp_keepalive(&conn_->tcp, 1, 60);
  state_ = State::kReady;
  backoff_ms_ = 0;
  worker_->stats().upstream_connects.Add();
  worker_->stats().upstream_connections.Add(1);
  if (!auth_command_.empty()) {
    inflight_.push_front(Entry{nullptr, worker_->now_ms(), Entry::Kind::kAuth});
    ++unsent_;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn_->tcp), OnAllocCb, OnReadCb);
  if (unsent_ > 0 || !pubsub_out_.empty()) worker_->MarkDirty(this);
}

void Upstream::BuildWriteBuffers(size_t first_entry) {
  iov_.clear();
  for (size_t i = first_entry; i < inflight_.size(); ++i) {
    const Entry& e = inflight_[i];
    switch (e.kind) {
      case Entry::Kind::kClient:
        iov_.push_back(MakeBuf(e.request->bytes.data(), e.request->bytes.size()));
        break;
      case Entry::Kind::kAsking:
        iov_.push_back(MakeBuf(kAskingCommand.data(), kAskingCommand.size()));
        break;
      case Entry::Kind::kAuth:
        iov_.push_back(MakeBuf(auth_command_.data(), auth_command_.size()));
        break;
    }
  }
}

void Upstream::Flush() {
  dirty = false;
  if (state_ != State::kReady || (unsent_ == 0 && pubsub_out_.empty())) return;
  BuildWriteBuffers(inflight_.size() - unsent_);
  unsent_ = 0;
  std::string* owned = nullptr;  // pub/sub bytes live in the write request until it completes
  if (!pubsub_out_.empty()) {
    owned = new std::string(std::move(pubsub_out_));
    pubsub_out_.clear();
    iov_.push_back(MakeBuf(owned->data(), owned->size()));
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&conn_->tcp);
  int n = uv_try_write(stream, iov_.data(), static_cast<unsigned int>(iov_.size()));
  if (n < 0 && n != UV_EAGAIN) {
    Close(StrCat("write failed: ", uv_strerror(n)));
    return;
  }
  size_t written = n > 0 ? static_cast<size_t>(n) : 0;
  size_t i = 0;
  while (i < iov_.size() && written >= iov_[i].len) written -= iov_[i++].len;
  if (i == iov_.size()) {
    delete owned;
    return;
  }
  iov_[i].base += written;
  iov_[i].len -= static_cast<unsigned int>(written);
  auto* req = new uv_write_t;
  req->data = owned;
  int rc = uv_write(req, stream, iov_.data() + i, static_cast<unsigned int>(iov_.size() - i), OnWriteCb);
  if (rc != 0) {
    delete owned;
    delete req;
    Close(StrCat("write failed: ", uv_strerror(rc)));
  }
}

void Upstream::OnWriteCb(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->handle->data);
  delete static_cast<std::string*>(req->data);
  delete req;
  if (status < 0 && status != UV_ECANCELED && c->owner != nullptr) {
    c->owner->Close(StrCat("write failed: ", uv_strerror(status)));
  }
}

void Upstream::OnAllocCb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(handle->data);
  if (c->owner == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  auto [data, size] = c->owner->input_.WritableRegion();
  *buf = uv_buf_init(data, static_cast<unsigned int>(std::min<size_t>(size, 1u << 30)));
}

void Upstream::OnReadCb(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  auto* c = static_cast<Connection*>(stream->data);
  if (c->owner != nullptr) c->owner->OnReadable(nread);
}

void Upstream::OnReadable(ssize_t nread) {
  if (nread < 0) {
    Close(nread == UV_EOF ? "connection closed by the server" : uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  input_.Commit(static_cast<size_t>(nread));
  std::string_view unparsed = input_.unparsed();
  framer_.Feed(unparsed.data() + unparsed.size() - nread, static_cast<size_t>(nread));
  Connection* live = conn_;
  protocol::ReplyFrame frame;
  for (;;) {
    protocol::FrameStatus st = framer_.Next(&frame);
    if (st == protocol::FrameStatus::kNeedMore) break;
    if (st == protocol::FrameStatus::kError) {
      Close(StrCat("protocol error from server: ", framer_.error()));
      return;
    }
    OnFrame(frame);
    if (conn_ != live) return;  // the reply handling closed this connection
  }
  input_.Settle(/*keep_when_empty=*/true);
}

void Upstream::OnFrame(const protocol::ReplyFrame& frame) {
  if (role_ == Role::kPubSub) {
    Slice bytes = input_.Take(frame.length);
    if (!inflight_.empty() && inflight_.front().kind == Entry::Kind::kAuth) {
      inflight_.pop_front();
      HandleInternalReply(Entry::Kind::kAuth, frame);
      return;
    }
    push_sink_->OnPush(this, frame, std::move(bytes));
    return;
  }
  if (inflight_.empty()) {
    Close("server sent a reply nobody asked for");
    return;
  }
  Entry e = inflight_.pop_front();
  Slice bytes = input_.Take(frame.length);
  if (e.kind != Entry::Kind::kClient) {
    HandleInternalReply(e.kind, frame);
    return;
  }
  worker_->follower().OnReply(this, e.request, frame, std::move(bytes));
  worker_->Release(e.request);
}

void Upstream::HandleInternalReply(Entry::Kind kind, const protocol::ReplyFrame& frame) {
  if (kind == Entry::Kind::kAuth && frame.type == protocol::ReplyType::kError) {
    std::string reason = StrCat("AUTH rejected: ", frame.error);
    SLOTPILOT_LOG_RATE_LIMITED(warn, "upstream {}: {}", address_, reason);
    Close(reason);
    EnterBackoff(reason);
  }
  // ASKING answers +OK; an error there shows up on the command that follows it anyway.
}

void Upstream::Close(std::string_view reason) {
  bool was_ready = state_ == State::kReady;
  if (conn_ != nullptr) {
    conn_->CloseHandles();
    conn_ = nullptr;
  }
  if (role_ == Role::kPubSub && push_sink_ != nullptr) push_sink_->OnPushConnectionLost(this, reason);
  if (was_ready) {
    worker_->stats().upstream_disconnects.Add();
    worker_->stats().upstream_connections.Add(-1);
    SLOTPILOT_LOG_RATE_LIMITED(warn, "upstream {}: connection lost: {}", address_, reason);
    FailAll(StrCat("connection to ", address_, " lost: ", reason));
    state_ = State::kIdle;  // reconnect on the next request
    worker_->RequestTopologyRefresh("upstream connection lost");
    return;
  }
  worker_->stats().upstream_connect_failures.Add();
  SLOTPILOT_LOG_RATE_LIMITED(warn, "upstream {}: {}", address_, reason);
  FailAll(StrCat("node ", address_, " is unreachable: ", reason));
  EnterBackoff(reason);
}

void Upstream::FailAll(std::string_view reason) {
  std::string error = StrCat("ERR slotpilot: ", reason);
  while (!inflight_.empty()) {
    Entry e = inflight_.pop_front();
    if (e.kind != Entry::Kind::kClient) continue;
    if (!e.request->answered()) worker_->CompleteWithError(e.request, error);
    worker_->Release(e.request);
  }
  unsent_ = 0;
  pubsub_out_.clear();
  framer_.Reset();
  input_.Release();
}

void Upstream::EnterBackoff(std::string_view reason) {
  const WorkerOptions& o = worker_->options();
  backoff_ms_ = backoff_ms_ == 0 ? o.reconnect_backoff_min_ms
                                 : std::min(backoff_ms_ * 2, o.reconnect_backoff_max_ms);
  thread_local std::minstd_rand rng{std::random_device{}()};
  uint64_t jitter = backoff_ms_ / 4 == 0 ? 0 : rng() % (backoff_ms_ / 4 + 1);
  retry_at_ms_ = worker_->now_ms() + backoff_ms_ - backoff_ms_ / 8 + jitter;
  state_ = State::kBackoff;
  last_error_ = std::string(reason);
  worker_->RequestTopologyRefresh("upstream unreachable");
}

}  // namespace slotpilot::proxy
