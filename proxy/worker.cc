#include "proxy/worker.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "protocol/strings.h"
#include "protocol/resp.h"
#include "proxy/client_session.h"
#include "proxy/sub_requests.h"
#include "proxy/logging.h"
#include "proxy/upstream.h"

namespace slotpilot::proxy {
namespace {

constexpr uint32_t kDeadlineTickMs = 5;
constexpr uint32_t kRetryTickMs = 2;
constexpr uint64_t kSweepIntervalMs = 1000;
constexpr uint64_t kRefreshRequestSpacingMs = 100;
constexpr uint64_t kHoldTickMs = 25;
constexpr absl::Duration kLoopRecordTtl = absl::Hours(1);

absl::StatusOr<int> OpenListenSocket(const std::string& host, uint16_t port) {
  struct sockaddr_storage addr;
  socklen_t len;
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) == 0) {
    len = sizeof(sockaddr_in);
  } else if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
    len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(StrCat("--listen: '", host, "' is not an IP address"));
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // One listener per worker on the same address: the kernel spreads connections across them.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 511) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(
        StrCat("cannot listen on ", FormatAddress(host, port), ": ", strerror(err)));
  }
  return fd;
}

}  // namespace

Worker::Worker(int id, WorkerOptions options, SharedState* shared)
    : id_(id),
      options_(std::move(options)),
      shared_(shared),
      blocks_(options_.block_size, options_.pool_max_free_blocks),
      requests_(options_.pool_max_free_requests),
      arena_(&blocks_),
      dispatcher_(this),
      follower_(this),
      deadlines_(kDeadlineTickMs, 4096),
      retries_(kRetryTickMs, 1024),
      loops_(options_.loop_tracker_max_slots, kLoopRecordTtl),
      holder_(this),
      throttle_(this, options_.throttle) {}

Worker::~Worker() { Join(); }

absl::Status Worker::Start() {
  absl::StatusOr<int> fd = OpenListenSocket(options_.listen_host, options_.listen_port);
  if (!fd.ok()) return fd.status();
  listen_fd_ = *fd;
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  int rc = uv_tcp_open(&listener_, listen_fd_);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, OnConnection);
  if (rc != 0) return absl::InternalError(StrCat("uv_listen: ", uv_strerror(rc)));
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  uv_prepare_init(&loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, OnPrepare);
  uv_async_init(&loop_, &async_, OnAsync);
  async_.data = this;
  for (uv_timer_t* t : {&deadline_timer_, &retry_timer_, &sweep_timer_, &drain_timer_, &hold_timer_}) {
    uv_timer_init(&loop_, t);
    t->data = this;
  }
  uv_timer_start(&sweep_timer_, OnSweep, kSweepIntervalMs, kSweepIntervalMs);
  throttle_.Start(&loop_);
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Worker::Run() {
  InstallPendingTopology();
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Everything is closed by CloseEverything(); run once more for close callbacks, then tidy up.
  uv_run(&loop_, UV_RUN_NOWAIT);
  if (uv_loop_close(&loop_) != 0) spdlog::warn("worker {}: loop closed with handles open", id_);
}

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::PostTopology(TopologySnapshot snapshot) {
  std::lock_guard<std::mutex> lock(mailbox_mu_);
  if (mailbox_closed_) return;
  pending_topology_ = std::move(snapshot);
  uv_async_send(&async_);
}

void Worker::PostMigrationState(MigrationStateSnapshot state) {
  std::lock_guard<std::mutex> lock(mailbox_mu_);
  if (mailbox_closed_) return;
  pending_migration_state_ = std::move(state);
  uv_async_send(&async_);
}

void Worker::PostOptions(WorkerOptions options) {
  std::lock_guard<std::mutex> lock(mailbox_mu_);
  if (mailbox_closed_) return;
  pending_options_ = std::make_unique<WorkerOptions>(std::move(options));
  uv_async_send(&async_);
}

void Worker::InstallPendingOptions() {
  std::unique_ptr<WorkerOptions> next;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    next = std::move(pending_options_);
  }
  if (next == nullptr) return;
  // Sized or bound at construction: changing them needs a new worker.
  next->listen_host = options_.listen_host;
  next->listen_port = options_.listen_port;
  next->block_size = options_.block_size;
  next->pool_max_free_blocks = options_.pool_max_free_blocks;
  next->pool_max_free_requests = options_.pool_max_free_requests;
  next->loop_tracker_max_slots = options_.loop_tracker_max_slots;
  options_ = std::move(*next);
  throttle_.Configure(options_.throttle);
}

void Worker::PostDrain(uint64_t grace_ms) {
  std::lock_guard<std::mutex> lock(mailbox_mu_);
  if (mailbox_closed_) return;
  drain_requested_ = true;
  drain_grace_ms_ = grace_ms;
  uv_async_send(&async_);
}

void Worker::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  self->InstallPendingOptions();
  self->InstallPendingTopology();
  self->HandleDrainRequest();
}

void Worker::InstallPendingTopology() {
  TopologySnapshot snapshot;
  MigrationStateSnapshot migration;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    snapshot = std::move(pending_topology_);
    migration = std::move(pending_migration_state_);
  }
  if (migration != nullptr) {
    throttle_.OnMigrationState(*migration);
    holder_.OnMigrationState(std::move(migration));
  }
  if (snapshot == nullptr || snapshot->version <= routing_.version()) return;
  routing_.Install(*snapshot);
  if (!snapshot->redis_version.empty()) redis_version_ = snapshot->redis_version;
  stats_.topology_installs.Add();
  holder_.OnTopologyInstalled();
}

void Worker::OnConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<Worker*>(server->data);
  if (status == 0) self->Accept();
}

void Worker::Accept() {
  auto* s = new ClientSession(this, shared_->next_client_id.fetch_add(1));
  s->worker_index = sessions_.size();
  sessions_.push_back(s);
  int64_t clients = shared_->clients.fetch_add(1) + 1;
  stats_.client_connections.Add(1);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(s->tcp())) != 0) {
    s->Close("accept failed");
    return;
  }
  stats_.client_connections_total.Add();
  if (clients > static_cast<int64_t>(options_.max_clients) || draining_) {
    stats_.client_rejected_max_clients.Add();
    static constexpr char kFull[] = "-ERR max number of clients reached\r\n";
    uv_buf_t buf = uv_buf_init(const_cast<char*>(kFull), sizeof(kFull) - 1);
    uv_try_write(reinterpret_cast<uv_stream_t*>(s->tcp()), &buf, 1);
    s->Close("max clients");
    return;
  }
  s->Start();
}

void Worker::OnSessionClosed(ClientSession* s) {
  size_t i = s->worker_index;
  if (i < sessions_.size() && sessions_[i] == s) {
    sessions_[i] = sessions_.back();
    sessions_[i]->worker_index = i;
    sessions_.pop_back();
  }
  if (s->dirty) {
    dirty_sessions_.erase(std::remove(dirty_sessions_.begin(), dirty_sessions_.end(), s),
                          dirty_sessions_.end());
  }
  shared_->clients.fetch_sub(1);
  stats_.client_connections.Add(-1);
  MaybeFinishDrain();
}

Request* Worker::NewRequest(ClientSession* session) {
  Request* r = requests_.Get();
  r->session = session;
  r->arrival_ms = now_ms();
  r->arrival_ns = uv_hrtime();
  r->deadline_ms = r->arrival_ms + options_.request_timeout_ms;
  return r;
}

void Worker::Release(Request* r) {
  assert(r->refs > 0);
  if (--r->refs != 0) return;
  if (r->in_retry) follower_.ResolveRetry(r);  // dropped without an answer (client gone)
  deadlines_.Cancel(&r->deadline_timer);
  retries_.Cancel(&r->retry_timer);
  Request* parent = r->parent;
  requests_.Put(r);
  if (parent != nullptr) Release(parent);  // the reference this sub-request held
}

void Worker::Complete(Request* r, Slice reply, bool is_error) {
  if (r->answered()) return;
  if (r->in_retry) follower_.ResolveRetry(r);
  if (r->probing) {  // answered without resolving the loop (timeout, node down)
    r->probing = false;
    holder_.OnProbeAbandoned(r->slot);
  }
  deadlines_.Cancel(&r->deadline_timer);
  r->reply = std::move(reply);
  r->state = RequestState::kDone;
  if (r->parent != nullptr) {  // a sub-request: its parent merges, and is what the client sees
    if (!r->parent->answered() && r->parent->group != nullptr) r->parent->group->OnChildDone(this, r);
    return;
  }
  if (r->group != nullptr) r->group->Abandon(this);  // answered early (deadline): drop children
  stats_.latency.Observe((uv_hrtime() - r->arrival_ns) / 1000);
  if (is_error) stats_.errors[r->command_class].Add();
  if (r->blocking) stats_.blocked_clients.Add(-1);
  if (r->session != nullptr) {
    r->session->OnRequestDone(r);
    if (r->blocking) r->session->ReleaseIdleDedicated();
  }
}

void Worker::CompleteWithError(Request* r, std::string_view error_line) {
  error_scratch_.clear();
  protocol::AppendError(&error_scratch_, error_line);
  Complete(r, arena_.Copy(error_scratch_), /*is_error=*/true);
}

void Worker::TrackDeadline(Request* r) {
  deadlines_.Schedule(&r->deadline_timer, r->deadline_ms);
  ArmWheelTimer(&deadline_timer_, deadlines_);
}

void Worker::ScheduleRetry(Request* r, uint64_t due_ms) {
  if (!r->retry_timer.scheduled()) Retain(r);
  retries_.Schedule(&r->retry_timer, due_ms);
  ArmWheelTimer(&retry_timer_, retries_);
  if (r->held && !closing_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(&hold_timer_))) {
    uv_timer_start(&hold_timer_, OnHoldTick, kHoldTickMs, kHoldTickMs);
  }
}

void Worker::CancelRetry(Request* r) {
  if (!r->retry_timer.scheduled()) return;
  retries_.Cancel(&r->retry_timer);
  Release(r);
}

void Worker::RecordLoop(Request* r, uint16_t slot, LoopPattern pattern, const std::string& chain) {
  stats_.redirect_loops[static_cast<size_t>(pattern)].Add();
  std::vector<LoopNode> nodes;
  for (uint16_t n : ChainNodes(r->hops)) nodes.push_back({routing_.node(n).address, routing_.node(n).id});
  absl::Time now = absl::Now();
  bool report = loops_.Record(slot, pattern, nodes, chain, now,
                              absl::Milliseconds(options_.loop_report_interval_ms));
  if (report) {
    SLOTPILOT_LOG_RATE_LIMITED(warn, "slot {} is in a redirect loop ({}): {}", slot,
                               LoopPatternName(pattern), chain);
    if (shared_->loop_reports != nullptr) {
      shared_->loop_reports->Push(LoopReport{slot, pattern, std::move(nodes), now});
    }
  }
}

void Worker::OnHoldTick(uv_timer_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  self->holder_.Tick(self->now_ms());
  if (self->holder_.held() == 0) uv_timer_stop(handle);
}

void Worker::ArmWheelTimer(uv_timer_t* timer, const TimerWheel& wheel) {
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(timer)) || closing_) return;
  uv_timer_cb cb = timer == &deadline_timer_ ? OnDeadlineTick : OnRetryTick;
  uv_timer_start(timer, cb, wheel.tick_ms(), wheel.tick_ms());
}

void Worker::OnDeadlineTick(uv_timer_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  uv_update_time(&self->loop_);
  self->deadlines_.Advance(self->now_ms(), [self](TimerWheel::Node* n) {
    self->OnDeadline(static_cast<Request*>(n->owner));
  });
  if (self->deadlines_.size() == 0) uv_timer_stop(handle);
}

void Worker::OnDeadline(Request* r) {
  if (r->answered()) return;
  Retain(r);  // cancelling its timers below may drop what keeps r alive
  if (r->held) {
    CancelRetry(r);
    holder_.Expire(r);
    Release(r);
    return;
  }
  stats_.request_timeouts.Add();
  CancelRetry(r);
  std::string where = r->node >= 0 && static_cast<size_t>(r->node) < routing_.node_count()
                          ? StrCat(" waiting for ", routing_.node(static_cast<uint16_t>(r->node)).address)
                          : std::string();
  CompleteWithError(r, StrCat("ERR slotpilot: request timed out after ",
                                    options_.request_timeout_ms, " ms", where));
  Release(r);
}

void Worker::OnRetryTick(uv_timer_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  uv_update_time(&self->loop_);
  self->retries_.Advance(self->now_ms(), [self](TimerWheel::Node* n) {
    auto* r = static_cast<Request*>(n->owner);
    self->follower_.OnRetryDue(r);
    self->Release(r);
  });
  if (self->retries_.size() == 0) uv_timer_stop(handle);
}

Upstream* Worker::UpstreamFor(uint16_t node) {
  if (node >= upstreams_.size()) upstreams_.resize(node + 1);
  std::unique_ptr<Upstream>& u = upstreams_[node];
  if (u == nullptr) {
    const RoutingTable::Node& n = routing_.node(node);
    u = std::make_unique<Upstream>(this, node, n.host, n.port);
  }
  return u.get();
}

void Worker::RetireUpstream(std::unique_ptr<Upstream> upstream) {
  if (upstream == nullptr) return;
  upstream->Shutdown("released");
  retired_.push_back(std::move(upstream));
}

void Worker::MarkDirty(ClientSession* session) {
  if (session->dirty) return;
  session->dirty = true;
  dirty_sessions_.push_back(session);
}

void Worker::MarkDirty(Upstream* upstream) {
  if (upstream->dirty) return;
  upstream->dirty = true;
  dirty_upstreams_.push_back(upstream);
}

void Worker::OnCheck(uv_check_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  self->FlushDirty();
  self->retired_.clear();  // safe point: no callback of theirs is on the stack, none is dirty
}

// Timer callbacks (deadlines, retries, holds, connect timeouts) run before the poll; without this
// their replies and resends would wait for the next wake-up (up to the 1 s sweep).
void Worker::OnPrepare(uv_prepare_t* handle) { static_cast<Worker*>(handle->data)->FlushDirty(); }

// Writes everything queued during this loop turn: one gathered write per connection.
void Worker::FlushDirty() {
  std::vector<Upstream*> upstreams;
  std::vector<ClientSession*> sessions;
  while (!dirty_upstreams_.empty() || !dirty_sessions_.empty()) {
    upstreams.swap(dirty_upstreams_);
    for (Upstream* u : upstreams) u->Flush();
    upstreams.clear();
    sessions.swap(dirty_sessions_);
    for (ClientSession* s : sessions) s->Flush();
    sessions.clear();
  }
}

void Worker::RequestTopologyRefresh(std::string_view reason) {
  uint64_t now = now_ms();
  if (last_refresh_request_ms_ != 0 && now - last_refresh_request_ms_ < kRefreshRequestSpacingMs) return;
  last_refresh_request_ms_ = now;
  stats_.topology_refresh_requests.Add();
  if (shared_->request_topology_refresh) shared_->request_topology_refresh(reason);
}

void Worker::OnSweep(uv_timer_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  uint64_t now = self->now_ms();
  for (ClientSession* s : self->sessions_) s->Sweep(now);
  self->throttle_.OnSecond(now);
  self->SweepStalledUpstreams(now);
}

// Requests answered at their deadline stay queued on their connection; twice the deadline without
// any reply means the node is gone or stopped (or the connection blackholed). New requests then
// go to a fresh connection, while the stalled one keeps its place in the reply order of what is
// on it: each request there still gets its own timeout error at its own deadline (or its reply,
// should the node wake up), and the connection closes once none is left waiting.
void Worker::SweepStalledUpstreams(uint64_t now) {
  uint64_t stall_limit = 2 * options_.request_timeout_ms;
  for (auto& u : upstreams_) {
    if (u == nullptr || !u->Stalled(now, stall_limit)) continue;
    SLOTPILOT_LOG_RATE_LIMITED(warn, "upstream {}: no reply for over {} ms; new requests go to a fresh connection",
                               u->address(), stall_limit);
    stats_.upstream_stalls.Add();
    stalled_.push_back(std::move(u));
  }
  for (size_t i = 0; i < stalled_.size();) {
    if (stalled_[i]->HasLiveRequests()) {
      ++i;
      continue;
    }
    RetireUpstream(std::move(stalled_[i]));
    stalled_[i] = std::move(stalled_.back());
    stalled_.pop_back();
  }
}

void Worker::HandleDrainRequest() {
  uint64_t grace_ms;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    if (!drain_requested_) return;
    drain_requested_ = false;
    grace_ms = drain_grace_ms_;
  }
  if (draining_) return;
  draining_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  std::vector<ClientSession*> sessions = sessions_;  // BeginDrain may close some at once
  for (ClientSession* s : sessions) s->BeginDrain();
  uv_timer_start(&drain_timer_, OnDrainTimeout, grace_ms, 0);
  MaybeFinishDrain();
}

void Worker::OnDrainTimeout(uv_timer_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  spdlog::warn("worker {}: shutdown grace expired with {} clients still open", self->id_,
               self->sessions_.size());
  self->CloseEverything();
}

void Worker::MaybeFinishDrain() {
  if (draining_ && !closing_ && sessions_.empty()) CloseEverything();
}

void Worker::CloseEverything() {
  if (closing_) return;
  closing_ = true;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    mailbox_closed_ = true;
  }
  std::vector<ClientSession*> sessions = sessions_;
  for (ClientSession* s : sessions) s->Close("shutdown");
  throttle_.Close();
  retries_.Advance(~0ull, [this](TimerWheel::Node* n) { Release(static_cast<Request*>(n->owner)); });
  upstreams_.clear();
  stalled_.clear();
  retired_.clear();
  dirty_upstreams_.clear();
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&check_), reinterpret_cast<uv_handle_t*>(&prepare_),
                         reinterpret_cast<uv_handle_t*>(&async_),
                         reinterpret_cast<uv_handle_t*>(&deadline_timer_), reinterpret_cast<uv_handle_t*>(&retry_timer_),
                         reinterpret_cast<uv_handle_t*>(&sweep_timer_), reinterpret_cast<uv_handle_t*>(&drain_timer_),
                         reinterpret_cast<uv_handle_t*>(&hold_timer_)}) {
    uv_close(h, nullptr);
  }
  if (!draining_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
}

}  // namespace slotpilot::proxy
