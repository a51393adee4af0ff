// The slotpilot process: N workers (the data path) and the control loop on the calling thread
// (topology refresh, signals). Run() returns after a clean shutdown (SIGTERM/SIGINT: stop
// accepting, drain in-flight requests for up to the grace period). SIGHUP re-parses the saved
// command line (the --config file is re-read, flags still win) and applies the reloadable options
// without touching connections; changes that need a restart are logged and counted.
#ifndef SLOTPILOT_PROXY_PROXY_H_
#define SLOTPILOT_PROXY_PROXY_H_

#include <uv.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "proxy/admin_server.h"
#include "proxy/config.h"
#include "proxy/loop_tracker.h"
#include "proxy/migration_controller.h"
#include "proxy/topology_refresher.h"
#include "proxy/worker.h"
#include "proxy/worker_options.h"

namespace slotpilot::proxy {

struct ProxyOptions {
  int threads = 1;
  WorkerOptions worker;
  TopologyRefresherOptions topology;
  uint64_t shutdown_grace_ms = 10000;
  bool admin_enabled = true;
  AdminServerOptions admin;
  std::vector<std::pair<std::string, std::string>> effective_config;  // for GET /v1/config
  std::string log_level = "info";
  size_t loop_report_queue_capacity = 1024;
  bool watcher_enabled = true;  // --watcher=off: no watcher thread at all
  MigrationControllerOptions migration;
  Config config;                  // what the options were derived from (SIGHUP diffs against it)
  std::vector<std::string> argv;  // re-parsed on SIGHUP; empty = SIGHUP only logs
};

// Translates the user-facing configuration into what the workers and the control plane use.
ProxyOptions ProxyOptionsFromConfig(const Config& config);

class Proxy : public AdminSource {
 public:
  explicit Proxy(ProxyOptions options);
  ~Proxy() override;
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds every listener (failing fast if the port is taken), runs until shut down.
  absl::Status Run();
  // Any thread: the same as SIGTERM (stop accepting, drain, return from Run()). Safe to call
  // before Run() has started its loop; then Run() drains at once.
  void Shutdown();
  // Any thread: the latest topology (null until the first refresh succeeds).
  TopologySnapshot topology() const;
  // Port the admin server listens on (0 when disabled or not started).
  uint16_t admin_port() const { return admin_ == nullptr ? 0 : admin_->port(); }

  // AdminSource (admin threads).
  TopologySnapshot Topology() const override { return topology(); }
  std::vector<MasterHealth> Masters() const override;
  std::string TopologyError() const override;
  StatsTotals Totals() const override;
  ControlMetrics Control() const override;
  std::vector<LoopRecord> Loops() const override;
  std::vector<std::pair<std::string, std::string>> EffectiveConfig() const override;
  std::string MigrationsJson() const override;
  std::string OpenSlotsJson() const override;
  std::string ClusterJson() const override;
  absl::Status RequestMigrationAction(uint16_t slot, const std::string& action) override;
  std::string LogLevel() const override;
  absl::Status SetLogLevel(const std::string& level) override;

 private:
  static void OnSignal(uv_signal_t* handle, int signum);
  static void OnShutdownAsync(uv_async_t* handle);
  static void OnLoopReports(uv_async_t* handle);
  static void OnSighup(uv_signal_t* handle, int signum);
  void BeginShutdown(int signum);
  // Control thread: re-parses argv and applies the result (SIGHUP).
  void Reload();
  // Control thread: applies the reloadable options of `loaded`; returns the names of the changed
  // options that need a restart (not applied).
  std::vector<std::string> ApplyReloadable(const Config& loaded);
  void PublishTopology(TopologySnapshot snapshot);
  void PublishMigrationState(MigrationStateSnapshot state);

  ProxyOptions options_;
  uv_loop_t loop_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_signal_t sighup_;
  uv_async_t shutdown_async_;
  uv_async_t loop_reports_async_;
  SharedState shared_;
  std::unique_ptr<ScriptCache> scripts_;
  std::unique_ptr<TopologyRefresher> refresher_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<MigrationController> migration_;
  LoopReportQueue loop_reports_;
  // Control loop: the latest loop reports, the watcher's evidence (bounded).
  std::vector<LoopReport> recent_loop_reports_;
  mutable std::mutex log_level_mu_;
  std::string log_level_ ABSL_GUARDED_BY(log_level_mu_);
  // GET /v1/config after reloads (log-level is overlaid from log_level_).
  std::vector<std::pair<std::string, std::string>> effective_config_ ABSL_GUARDED_BY(log_level_mu_);
  Config running_config_;  // control thread only
  std::atomic<uint64_t> config_reloads_{0};
  std::atomic<uint64_t> config_reload_failures_{0};
  std::atomic<uint64_t> config_restart_required_{0};
  bool shutting_down_ = false;
  bool signals_started_ = false;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_PROXY_H_
