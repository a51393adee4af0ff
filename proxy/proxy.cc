#include "proxy/proxy.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>

#include <unistd.h>

#include "absl/strings/str_join.h"
#include "protocol/strings.h"
#include "proxy/logging.h"
#include "proxy/version.h"

namespace slotpilot::proxy {

namespace {
uint64_t Ms(absl::Duration d) { return static_cast<uint64_t>(absl::ToInt64Milliseconds(d)); }

// <hostname>-<pid>-<random>: unique across the sidecars of one cluster, stable for a process.
std::string DefaultSidecarId() {
  char host[256] = "host";
  gethostname(host, sizeof(host) - 1);
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "%04x", rd() & 0xFFFF);
  return StrCat(host, "-", getpid(), "-", suffix);
}

std::string ValueOf(const std::vector<std::pair<std::string, std::string>>& values,
                    std::string_view name) {
  for (const auto& [key, value] : values) {
    if (key == name) return value;
  }
  return "";
}

// Every worker's throttled nodes, summed per node (any thread).
std::vector<ThrottleNodeReport> ThrottleNodes(const std::vector<std::unique_ptr<Worker>>& workers) {
  std::vector<std::vector<ThrottleNodeReport>> per_worker;
  for (const auto& w : workers) per_worker.push_back(w->ThrottleReports());
  return MergeThrottleReports(per_worker);
}

migration::WatcherMode ToWatcherMode(WatcherMode mode) {
  switch (mode) {
    case WatcherMode::kOff: return migration::WatcherMode::kOff;
    case WatcherMode::kObserve: return migration::WatcherMode::kObserve;
    case WatcherMode::kFinish: return migration::WatcherMode::kFinish;
  }
  return migration::WatcherMode::kObserve;
}
}  // namespace

ProxyOptions ProxyOptionsFromConfig(const Config& c) {
  ProxyOptions o;
  o.threads = c.threads;
  o.shutdown_grace_ms = Ms(c.shutdown_grace);
  WorkerOptions& w = o.worker;
  w.listen_host = c.listen.host;
  w.listen_port = c.listen.port;
  w.request_limits.max_bulk_bytes = c.proto_max_bulk_len;
  w.request_limits.max_args = static_cast<size_t>(c.max_args);
  w.request_limits.max_inline_bytes = c.max_inline_bytes;
  w.max_clients = static_cast<size_t>(c.max_clients);
  w.max_pending_per_client = static_cast<size_t>(c.max_pending_per_client);
  w.client_max_input_bytes = c.client_max_input_bytes;
  w.client_max_output_bytes = c.client_max_output_bytes;
  w.idle_timeout_ms = Ms(c.idle_timeout);
  w.partial_request_timeout_ms = Ms(c.partial_request_timeout);
  w.request_timeout_ms = Ms(c.request_timeout);
  w.max_redirects = c.max_redirects;
  w.retry_backoff_min_ms = Ms(c.retry_backoff_min);
  w.retry_backoff_max_ms = Ms(c.retry_backoff_max);
  w.connect_timeout_ms = Ms(c.connect_timeout);
  w.reconnect_backoff_min_ms = Ms(c.reconnect_backoff_min);
  w.reconnect_backoff_max_ms = Ms(c.reconnect_backoff_max);
  w.upstream_max_pending = static_cast<size_t>(c.upstream_max_pending);
  w.upstream_user = c.upstream_user;
  w.upstream_password = c.upstream_password;
  w.client_password = c.client_password;
  w.allow_admin_commands = c.allow_admin_commands;
  w.loop_hold = c.loop_policy == LoopPolicy::kHold;
  w.loop_hold_timeout_ms = Ms(c.loop_hold_timeout);
  w.loop_hold_max_requests = static_cast<size_t>(c.loop_hold_max_requests);
  w.throttle = ThrottleOptionsFromConfig(c);
  TopologyRefresherOptions& t = o.topology;
  for (const Endpoint& e : c.seeds) t.seeds.push_back({e.host, e.port});
  t.interval_ms = Ms(c.topology_refresh_interval);
  t.min_interval_ms = Ms(c.topology_min_refresh_interval);
  t.client.connect_timeout = std::chrono::milliseconds(Ms(c.connect_timeout));
  t.client.command_timeout = std::chrono::milliseconds(std::max<uint64_t>(Ms(c.connect_timeout), 1000));
  t.client.username = c.upstream_user;
  t.client.password = c.upstream_password;
  o.admin.host = c.admin_listen.host;
  o.admin.port = c.admin_listen.port;
  o.admin.token = c.admin_token;
  o.admin.max_body_bytes = c.admin_max_body_bytes;
  o.admin.max_headers = static_cast<size_t>(c.admin_max_headers);
  o.effective_config = proxy::EffectiveConfig(c);
  o.watcher_enabled = c.watcher != WatcherMode::kOff;
  MigrationControllerOptions& m = o.migration;
  m.mode = c.watcher == WatcherMode::kFinish ? migration::WatcherMode::kFinish
                                             : migration::WatcherMode::kObserve;
  for (const Endpoint& e : c.seeds) m.seeds.push_back({e.host, e.port});
  m.client = t.client;
  m.client.command_timeout = std::chrono::milliseconds(2000);
  m.stall_timeout = c.stall_timeout;
  m.sidecar_id = c.sidecar_id.empty() ? DefaultSidecarId() : c.sidecar_id;
  // Unattended repairs never move a key that would block its source for longer than a quarter
  // of cluster-node-timeout (that risks a failover); such slots are left to an operator.
  m.finisher.refuse_blocking_keys = c.watcher == WatcherMode::kFinish;
  o.config = c;
  return o;
}

Proxy::Proxy(ProxyOptions options)
    : options_(std::move(options)), loop_reports_(options_.loop_report_queue_capacity) {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_async_init(&loop_, &shutdown_async_, OnShutdownAsync);
  shutdown_async_.data = this;
  uv_async_init(&loop_, &loop_reports_async_, OnLoopReports);
  loop_reports_async_.data = this;
  loop_reports_.SetNotify([this] { uv_async_send(&loop_reports_async_); });
  shared_.loop_reports = &loop_reports_;
  scripts_ = std::make_unique<ScriptCache>(options_.config.script_cache_max_bytes);
  shared_.scripts = scripts_.get();
  log_level_ = options_.log_level;
  effective_config_ = options_.effective_config;
  running_config_ = options_.config;
}

void Proxy::Shutdown() { uv_async_send(&shutdown_async_); }

void Proxy::OnShutdownAsync(uv_async_t* handle) {
  static_cast<Proxy*>(handle->data)->BeginShutdown(0);
}

TopologySnapshot Proxy::topology() const {
  return refresher_ == nullptr ? nullptr : refresher_->current();
}

Proxy::~Proxy() {
  if (admin_ != nullptr) admin_->Stop();
  for (auto& w : workers_) w->Join();
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_loop_close(&loop_);
}

absl::Status Proxy::Run() {
  std::signal(SIGPIPE, SIG_IGN);
  refresher_ = std::make_unique<TopologyRefresher>(
      &loop_, options_.topology, [this](TopologySnapshot s) { PublishTopology(std::move(s)); });
  TopologyRefresher* refresher = refresher_.get();
  shared_.request_topology_refresh = [refresher](std::string_view) { refresher->RequestRefresh(); };
  for (int i = 0; i < options_.threads; ++i) {
    auto worker = std::make_unique<Worker>(i, options_.worker, &shared_);
    absl::Status started = worker->Start();
    if (!started.ok()) {
      for (auto& w : workers_) w->PostDrain(0);
      for (auto& w : workers_) w->Join();
      refresher_->Stop();
      uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_async_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&loop_reports_async_), nullptr);
      uv_run(&loop_, UV_RUN_DEFAULT);
      return started;
    }
    workers_.push_back(std::move(worker));
  }
  if (options_.admin_enabled) {
    admin_ = std::make_unique<AdminServer>(options_.admin, this);
    absl::Status admin_started = admin_->Start();
    if (!admin_started.ok()) {
      admin_.reset();
      for (auto& w : workers_) w->PostDrain(0);
      for (auto& w : workers_) w->Join();
      refresher_->Stop();
      uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_async_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&loop_reports_async_), nullptr);
      uv_run(&loop_, UV_RUN_DEFAULT);
      return admin_started;
    }
  }
  for (uv_signal_t* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, OnSignal, SIGTERM);
  uv_signal_start(&sigint_, OnSignal, SIGINT);
  uv_signal_start(&sighup_, OnSighup, SIGHUP);
  signals_started_ = true;
  spdlog::info("slotpilot {} listening on {} with {} worker(s)", Version(),
               FormatAddress(options_.worker.listen_host, options_.worker.listen_port),
               options_.threads);
  if (options_.watcher_enabled) {
    migration_ = std::make_unique<MigrationController>(
        options_.migration, [this](MigrationStateSnapshot s) { PublishMigrationState(std::move(s)); },
        [this] { return topology(); });
    migration_->Start();
  }
  refresher_->Start();
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (migration_ != nullptr) migration_->Stop();
  for (auto& w : workers_) w->Join();
  spdlog::info("slotpilot stopped");
  return absl::OkStatus();
}

void Proxy::PublishTopology(TopologySnapshot snapshot) {
  for (auto& w : workers_) w->PostTopology(snapshot);
}

void Proxy::OnSignal(uv_signal_t* handle, int signum) {
  static_cast<Proxy*>(handle->data)->BeginShutdown(signum);
}

void Proxy::BeginShutdown(int signum) {
  if (shutting_down_) return;
  shutting_down_ = true;
  spdlog::info("{}: draining for up to {} ms", signum == 0 ? std::string("shutdown requested") : StrCat("signal ", signum), options_.shutdown_grace_ms);
  for (auto& w : workers_) w->PostDrain(options_.shutdown_grace_ms);
  // The control loop ends once its own handles are closed; workers are joined in Run().
  if (refresher_ != nullptr) refresher_->Stop();
  if (signals_started_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&loop_reports_async_), nullptr);
}

void Proxy::OnLoopReports(uv_async_t* handle) {
  auto* self = static_cast<Proxy*>(handle->data);
  constexpr size_t kKeep = 256;
  for (LoopReport& r : self->loop_reports_.Drain()) {
    if (self->migration_ != nullptr) self->migration_->OnLoopEvidence(r.slot);
    if (self->recent_loop_reports_.size() >= kKeep) {
      self->recent_loop_reports_.erase(self->recent_loop_reports_.begin());
    }
    self->recent_loop_reports_.push_back(std::move(r));
  }
}

std::vector<MasterHealth> Proxy::Masters() const {
  return refresher_ == nullptr ? std::vector<MasterHealth>{} : refresher_->masters();
}

std::string Proxy::TopologyError() const {
  if (refresher_ == nullptr) return "not started";
  std::string e = refresher_->last_error();
  return e.empty() ? "no answer yet" : e;
}

StatsTotals Proxy::Totals() const {
  StatsTotals t;
  for (const auto& w : workers_) t.Add(w->stats());
  return t;
}

ControlMetrics Proxy::Control() const {
  ControlMetrics c;
  if (TopologySnapshot t = topology()) {
    c.topology_version = t->version;
    c.topology_masters = t->masters.size();
    c.topology_slots_assigned = static_cast<uint64_t>(t->assigned_slots);
  }
  if (refresher_ != nullptr) {
    c.topology_refreshes = refresher_->refreshes();
    c.topology_refresh_failures = refresher_->failures();
  }
  if (migration_ != nullptr) c.watcher = migration_->Metrics();
  c.throttle_nodes = ThrottleNodes(workers_);
  c.throttled_nodes = c.throttle_nodes.size();
  c.loop_reports_queued = loop_reports_.pushed();
  c.loop_reports_dropped = loop_reports_.dropped();
  c.config_reloads = config_reloads_.load();
  c.config_reload_failures = config_reload_failures_.load();
  c.config_restart_required = config_restart_required_.load();
  c.masters = Masters();
  return c;
}

std::vector<LoopRecord> Proxy::Loops() const {
  std::vector<std::vector<LoopRecord>> per_worker;
  absl::Time now = absl::Now();
  for (const auto& w : workers_) per_worker.push_back(w->loop_tracker().Snapshot(now));
  return MergeLoopRecords(per_worker);
}

std::vector<std::pair<std::string, std::string>> Proxy::EffectiveConfig() const {
  std::lock_guard<std::mutex> lock(log_level_mu_);
  auto config = effective_config_;
  for (auto& [key, value] : config) {
    if (key == "log-level") value = log_level_;
  }
  return config;
}

void Proxy::OnSighup(uv_signal_t* handle, int) { static_cast<Proxy*>(handle->data)->Reload(); }

void Proxy::Reload() {
  if (options_.argv.empty()) {
    spdlog::warn("SIGHUP: no command line to re-read; nothing reloaded");
    return;
  }
  std::vector<const char*> argv;
  for (const std::string& arg : options_.argv) argv.push_back(arg.c_str());
  absl::StatusOr<ParsedCommandLine> parsed =
      ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  if (!parsed.ok() || parsed->action != ParsedCommandLine::Action::kRun) {
    config_reload_failures_.fetch_add(1);
    spdlog::error("SIGHUP: configuration not reloaded, keeping the running one: {}",
                  parsed.ok() ? std::string("the command line is not a run")
                              : std::string(parsed.status().message()));
    return;
  }
  std::vector<std::string> restart = ApplyReloadable(parsed->config);
  config_reloads_.fetch_add(1);
  config_restart_required_.store(restart.size());
  if (restart.empty()) {
    spdlog::info("SIGHUP: configuration reloaded");
  } else {
    spdlog::warn("SIGHUP: configuration reloaded; changed options that need a restart and were "
                 "not applied: {}", absl::StrJoin(restart, ", "));
  }
}

std::vector<std::string> Proxy::ApplyReloadable(const Config& loaded) {
  std::vector<std::string> restart = DiffNonReloadable(running_config_, loaded);
  Config merged = MergeReloadable(running_config_, loaded);
  // The watcher thread exists only if it was on at start-up, and only a finisher built for
  // finish mode refuses keys too big to move unattended: entering finish needs a restart.
  const bool can_finish = options_.migration.finisher.refuse_blocking_keys;
  if ((migration_ == nullptr && merged.watcher != WatcherMode::kOff) ||
      (merged.watcher == WatcherMode::kFinish && !can_finish)) {
    restart.push_back("watcher");
    merged.watcher = running_config_.watcher;
  }
  ProxyOptions next = ProxyOptionsFromConfig(merged);
  for (auto& w : workers_) w->PostOptions(next.worker);
  if (migration_ != nullptr) migration_->SetMode(ToWatcherMode(merged.watcher));
  // Only a changed file level overrides one set through PUT /v1/log-level.
  if (merged.log_level != running_config_.log_level) {
    const std::string level = ValueOf(next.effective_config, "log-level");
    absl::Status set = SetLogLevel(level);
    if (!set.ok()) spdlog::error("SIGHUP: log level {}: {}", level, std::string(set.message()));
  }
  {
    std::lock_guard<std::mutex> lock(log_level_mu_);
    effective_config_ = std::move(next.effective_config);
  }
  running_config_ = merged;
  return restart;
}

std::string Proxy::MigrationsJson() const {
  std::string json = migration_ == nullptr ? std::string("{\"mode\":\"off\",\"migrations\":[]}\n")
                                           : migration_->MigrationsJson();
  return AddThrottleJson(json, ThrottleNodes(workers_));
}

std::string Proxy::OpenSlotsJson() const {
  return migration_ == nullptr ? "[]" : migration_->OpenSlotsJson();
}

std::string Proxy::ClusterJson() const {
  if (migration_ == nullptr) return "{\"error\":\"the migration watcher is off (--watcher=off)\"}\n";
  return migration_->ClusterJson();
}

absl::Status Proxy::RequestMigrationAction(uint16_t slot, const std::string& action) {
  if (migration_ == nullptr) {
    return absl::UnimplementedError("the migration watcher is off (--watcher=off)");
  }
  return migration_->RequestAction(slot, action);
}

void Proxy::PublishMigrationState(MigrationStateSnapshot state) {
  // A repair changed slot owners: refresh the map now rather than at the next periodic refresh.
  if (state->owners_changed && refresher_ != nullptr) refresher_->RequestRefresh();
  for (auto& w : workers_) w->PostMigrationState(state);
}

std::string Proxy::LogLevel() const {
  std::lock_guard<std::mutex> lock(log_level_mu_);
  return log_level_;
}

absl::Status Proxy::SetLogLevel(const std::string& level) {
  absl::Status st = proxy::SetLogLevel(level);
  if (!st.ok()) return st;
  std::lock_guard<std::mutex> lock(log_level_mu_);
  log_level_ = level;
  spdlog::info("log level set to {}", level);
  return absl::OkStatus();
}

}  // namespace slotpilot::proxy
