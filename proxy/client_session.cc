#include "proxy/client_session.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"
#include "protocol/strings.h"
#include "protocol/resp.h"
#include "proxy/logging.h"
#include "proxy/pubsub_relay.h"
#include "proxy/transaction.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// "ip:port", "[ip6]:port".
std::string FormatAddress(const sockaddr_storage& addr) {
  char ip[64] = {0};
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    uv_ip6_name(a6, ip, sizeof(ip));
    return StrCat("[", ip, "]:", ntohs(a6->sin6_port));
  }
  const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
  uv_ip4_name(a4, ip, sizeof(ip));
  return StrCat(ip, ":", ntohs(a4->sin_port));
}

}  // namespace

// A uv_write in progress: the first `count` requests of writing_ are released in its callback.
struct ClientSession::WriteReq {
  uv_write_t req;
  ClientSession* session;
  size_t count;
  size_t bytes;
};

ClientSession::ClientSession(Worker* worker, uint64_t id)
    : worker_(worker), id_(id), input_(&worker->blocks()), parser_(worker->options().request_limits) {
  uv_tcp_init(worker_->loop(), &tcp_);
  tcp_.data = this;
  created_ms = last_activity_ms = worker_->now_ms();
}

ClientSession::~ClientSession() {
  if (registered_) worker_->shared().client_registry.Remove(&row_);
}

void ClientSession::SetName(std::string_view new_name) {
  name.assign(new_name.data(), new_name.size());
  if (registered_) worker_->shared().client_registry.SetName(&row_, name);
}

// After each command: what CLIENT LIST shows of this client's state.
void ClientSession::RefreshRow() {
  bool multi = in_transaction();
  row_.SetFlag(ClientRow::kMulti, multi);
  row_.SetFlag(ClientRow::kPubSub, subscribed());
  row_.multi_queued.store(multi ? static_cast<int32_t>(transaction_->queued_count()) : -1,
                          std::memory_order_relaxed);
}

void ClientSession::Register() {
  row_.id = id_;
  row_.addr = peer;
  row_.created_ms = created_ms;
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) == 0) row_.fd = fd;
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    row_.laddr = FormatAddress(addr);
  }
  worker_->shared().client_registry.Add(&row_);
  registered_ = true;
}

Transaction& ClientSession::transaction() {
  if (transaction_ == nullptr) transaction_ = std::make_unique<Transaction>(worker_, this);
  return *transaction_;
}

bool ClientSession::in_transaction() const { return transaction_ != nullptr && transaction_->in_multi(); }

PubSubRelay& ClientSession::pubsub() {
  if (pubsub_ == nullptr) pubsub_ = std::make_unique<PubSubRelay>(worker_, this);
  return *pubsub_;
}

bool ClientSession::subscribed() const { return pubsub_ != nullptr && pubsub_->subscribed(); }

Upstream* ClientSession::DedicatedUpstream(uint16_t node) {
  std::unique_ptr<Upstream>& u = dedicated_[node];
  if (u == nullptr) {
    const RoutingTable::Node& n = worker_->routing().node(node);
    u = std::make_unique<Upstream>(worker_, node, n.host, n.port, Upstream::Role::kDedicated);
  }
  return u.get();
}

void ClientSession::ReleaseIdleDedicated() {
  for (auto it = dedicated_.begin(); it != dedicated_.end();) {
    if (it->second->in_flight() == 0) {
      worker_->RetireUpstream(std::move(it->second));
      it = dedicated_.erase(it);
    } else {
      ++it;
    }
  }
  row_.SetFlag(ClientRow::kBlocked, !dedicated_.empty());
}

void ClientSession::ResetState() {
  if (transaction_ != nullptr) transaction_->Reset();
  if (pubsub_ != nullptr) pubsub_->Reset();
  SetName("");
  authenticated = false;
}

void ClientSession::Start() {
  uv_tcp_nodelay(&tcp_, 1);
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    peer = FormatAddress(addr);
  }
  Register();
  reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), OnAllocCb, OnReadCb) == 0;
  if (!reading_) Close("read start failed");
}

void ClientSession::OnAllocCb(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* self = static_cast<ClientSession*>(handle->data);
  auto [data, size] = self->input_.WritableRegion();
  *buf = uv_buf_init(data, static_cast<unsigned int>(std::min<size_t>(size, 1u << 30)));
}

void ClientSession::OnReadCb(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
  static_cast<ClientSession*>(stream->data)->OnReadable(nread);
}

void ClientSession::OnReadable(ssize_t nread) {
  if (nread < 0) {
    Close(nread == UV_EOF ? "client closed the connection" : uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) {
    input_.Settle(/*keep_when_empty=*/false);
    return;
  }
  input_.Commit(static_cast<size_t>(nread));
  last_activity_ms = worker_->now_ms();
  ProcessInput();
}

void ClientSession::ProcessInput() {
  const WorkerOptions& o = worker_->options();
  while (!closing_ && !close_after_replies_) {
    // A request waiting for throttle budget stops the reading too: TCP backpressure, bounded memory.
    if (in_flight() >= o.max_pending_per_client || throttle_waiting > 0) {
      PauseReading();
      break;
    }
    std::string_view data = input_.unparsed();
    if (data.empty()) break;
    protocol::ParseResult res = parser_.Parse(data);
    if (res.status == protocol::ParseStatus::kNeedMore) break;
    if (res.status == protocol::ParseStatus::kError) {
      FailProtocol(res.error);
      break;
    }
    if (!DispatchOne(data, res)) break;
  }
  if (closing_) return;
  size_t buffered = input_.buffered();
  if (buffered == 0 || close_after_replies_) {
    partial_since_ms_ = 0;
    input_.Settle(/*keep_when_empty=*/false);
    return;
  }
  if (partial_since_ms_ == 0) partial_since_ms_ = worker_->now_ms();
  size_t remaining = parser_.pending_bulk_remaining();
  size_t frame_size = remaining == 0 ? 0 : parser_.pending_bytes() + remaining;
  if (std::max(buffered, frame_size) > o.client_max_input_bytes) {
    worker_->stats().client_closed_input_limit.Add();
    FailProtocol("Protocol error: request exceeds client-max-input-bytes");
    return;
  }
  input_.Settle(/*keep_when_empty=*/false, frame_size);
}

// Hands one framed request to the dispatcher. Returns false when no more input should be read.
bool ClientSession::DispatchOne(std::string_view data, const protocol::ParseResult& res) {
  const auto& args = parser_.args();
  if (args.empty()) {  // "*0\r\n" or a blank inline line: Redis ignores these
    input_.Skip(res.consumed);
    return true;
  }
  absl::InlinedVector<std::string_view, 16> argv;
  argv.reserve(args.size());
  for (size_t i = 0; i < args.size(); ++i) argv.push_back(parser_.Arg(data, i));
  Slice raw;
  if (parser_.is_inline()) {
    input_.Skip(res.consumed);  // re-encoded as multibulk by the dispatcher if forwarded
  } else {
    raw = input_.Take(res.consumed);
  }
  worker_->dispatcher().Dispatch(this, absl::MakeConstSpan(argv), std::move(raw));
  RefreshRow();
  return !closing_;
}

void ClientSession::FailProtocol(std::string_view error) {
  worker_->stats().client_protocol_errors.Add();
  SLOTPILOT_LOG_RATE_LIMITED(info, "client {} ({}): {}", id_, peer, error);
  Request* r = worker_->NewRequest(this);
  Enqueue(r);
  worker_->CompleteWithError(r, StrCat("ERR ", error));
  input_.Skip(input_.buffered());
  parser_.Reset();
  CloseAfterReplies();
}

void ClientSession::Enqueue(Request* r) {
  worker_->Retain(r);
  pending_.push_back(r);
}

void ClientSession::OnRequestDone(Request* r) {
  if (closing_ || pending_.empty() || pending_.front() != r) return;
  while (!pending_.empty() && pending_.front()->answered()) {
    Request* done = pending_.pop_front();
    output_bytes_ += done->reply.size();
    ready_.push_back(done);
  }
  if (output_bytes_ > worker_->options().client_max_output_bytes) {
    worker_->stats().client_closed_output_limit.Add();
    SLOTPILOT_LOG_RATE_LIMITED(warn, "client {} ({}): {} reply bytes unread, over client-max-output-bytes; closing",
                               id_, peer, output_bytes_);
    Close("output limit");
    return;
  }
  worker_->MarkDirty(this);
}

void ClientSession::Flush() {
  dirty = false;
  if (closing_ || ready_.empty()) return;
  iov_.clear();
  for (size_t i = 0; i < ready_.size(); ++i) {
    const Slice& s = ready_[i]->reply;
    iov_.push_back(uv_buf_init(const_cast<char*>(s.data()), static_cast<unsigned int>(s.size())));
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  int n = uv_try_write(stream, iov_.data(), static_cast<unsigned int>(iov_.size()));
  if (n < 0 && n != UV_EAGAIN) {
    Close(uv_strerror(n));
    return;
  }
  size_t written = n > 0 ? static_cast<size_t>(n) : 0;
  output_bytes_ -= written;
  size_t i = 0;
  while (i < iov_.size() && written >= iov_[i].len) {
    written -= iov_[i++].len;
    worker_->Release(ready_.pop_front());
  }
  if (ready_.empty()) {
    MaybeResumeReading();
    MaybeFinishClosing();
    return;
  }
  ready_.front()->reply.RemovePrefix(written);
  iov_[i].base += written;
  iov_[i].len -= static_cast<unsigned int>(written);
  auto* w = new WriteReq{{}, this, ready_.size(), 0};
  w->req.data = w;
  for (size_t j = i; j < iov_.size(); ++j) w->bytes += iov_[j].len;
  while (!ready_.empty()) writing_.push_back(ready_.pop_front());
  int rc = uv_write(&w->req, stream, iov_.data() + i, static_cast<unsigned int>(iov_.size() - i), OnWriteCb);
  if (rc != 0) {
    // No callback will come: release what this write held, then close.
    OnWritten(w, rc);
  }
}

void ClientSession::OnWriteCb(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  w->session->OnWritten(w, status);
}

void ClientSession::OnWritten(WriteReq* w, int status) {
  for (size_t i = 0; i < w->count && !writing_.empty(); ++i) worker_->Release(writing_.pop_front());
  output_bytes_ -= std::min(output_bytes_, w->bytes);
  delete w;
  if (status < 0 && status != UV_ECANCELED) {
    Close(uv_strerror(status));
    return;
  }
  MaybeResumeReading();
  MaybeFinishClosing();
}

void ClientSession::PauseReading() {
  if (!reading_ || read_paused_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  read_paused_ = true;
}

void ClientSession::MaybeResumeReading() {
  if (!read_paused_ || closing_ || close_after_replies_ || worker_->draining()) return;
  if (in_flight() > worker_->options().max_pending_per_client / 2 || throttle_waiting > 0) return;
  read_paused_ = false;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), OnAllocCb, OnReadCb);
  ProcessInput();  // requests already buffered while paused
}

void ClientSession::CloseAfterReplies() {
  close_after_replies_ = true;
  PauseReading();
  MaybeFinishClosing();
}

void ClientSession::BeginDrain() {
  close_after_replies_ = true;
  PauseReading();
  MaybeFinishClosing();
}

void ClientSession::MaybeFinishClosing() {
  if (close_after_replies_ && in_flight() == 0) Close("finished");
}

void ClientSession::Sweep(uint64_t now_ms) {
  const WorkerOptions& o = worker_->options();
  if (closing_) return;
  if (partial_since_ms_ != 0 && now_ms - partial_since_ms_ > o.partial_request_timeout_ms) {
    worker_->stats().client_closed_idle.Add();
    Close("incomplete request held past partial-request-timeout");
    return;
  }
  if (o.idle_timeout_ms != 0 && in_flight() == 0 && now_ms - last_activity_ms > o.idle_timeout_ms) {
    worker_->stats().client_closed_idle.Add();
    Close("idle timeout");
  }
}

void ClientSession::Park(Request* r) {
  worker_->Retain(r);
  parked_.push_back(r);
}

void ClientSession::UnparkAll() {
  while (!parked_.empty() && retries_unresolved == 0) {
    Request* r = parked_.pop_front();
    if (!r->abandoned()) worker_->follower().router().Route(r);  // else timed out while parked
    worker_->Release(r);
  }
}

void ClientSession::Close(std::string_view why) {
  if (closing_) return;
  closing_ = true;
  spdlog::debug("client {} ({}) closing: {}", id_, peer, why);
  if (reading_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  while (!parked_.empty()) worker_->Release(parked_.pop_front());
  while (!pending_.empty()) {
    Request* r = pending_.pop_front();
    r->session = nullptr;
    if (r->probing) {
      r->probing = false;
      worker_->holder().OnProbeAbandoned(r->slot);
    }
    worker_->Release(r);
  }
  while (!ready_.empty()) worker_->Release(ready_.pop_front());
  // writing_ is released by the write callbacks, which uv_close runs with UV_ECANCELED.
  input_.Release();
  // Pinned connections go now: the server forgets blocked commands, watches and subscriptions.
  if (transaction_ != nullptr) transaction_->Reset();
  if (pubsub_ != nullptr) pubsub_->Drop();
  for (auto& [node, u] : dedicated_) worker_->RetireUpstream(std::move(u));
  dedicated_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), OnCloseCb);
}

void ClientSession::OnCloseCb(uv_handle_t* handle) {
  auto* self = static_cast<ClientSession*>(handle->data);
  self->worker_->OnSessionClosed(self);
  delete self;
}

}  // namespace slotpilot::proxy
