// The slotpilot process: N workers (the data path) and the control loop on the calling thread
// (topology refresh, signals). Run() returns after a clean shutdown (SIGTERM/SIGINT: stop
// accepting, drain in-flight requests for up to the grace period).
#ifndef SLOTPILOT_PROXY_PROXY_H_
#define SLOTPILOT_PROXY_PROXY_H_

#include <uv.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "proxy/config.h"
#include "proxy/topology_refresher.h"
#include "proxy/worker.h"
#include "proxy/worker_options.h"

namespace slotpilot::proxy {

struct ProxyOptions {
  int threads = 1;
  WorkerOptions worker;
  TopologyRefresherOptions topology;
  uint64_t shutdown_grace_ms = 10000;
};

// Translates the user-facing configuration into what the workers and the control plane use.
ProxyOptions ProxyOptionsFromConfig(const Config& config);

class Proxy {
 public:
  explicit Proxy(ProxyOptions options);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds every listener (failing fast if the port is taken), runs until shut down.
  absl::Status Run();
  // Any thread: the same as SIGTERM (stop accepting, drain, return from Run()). Safe to call
  // before Run() has started its loop; then Run() drains at once.
  void Shutdown();
  // Any thread: the latest topology (null until the first refresh succeeds).
  TopologySnapshot topology() const;

 private:
  static void OnSignal(uv_signal_t* handle, int signum);
  static void OnShutdownAsync(uv_async_t* handle);
  void BeginShutdown(int signum);
  void PublishTopology(TopologySnapshot snapshot);

  ProxyOptions options_;
  uv_loop_t loop_;
  uv_signal_t sigterm_;
  uv_signal_t sigint_;
  uv_async_t shutdown_async_;
  SharedState shared_;
  std::unique_ptr<TopologyRefresher> refresher_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool shutting_down_ = false;
  bool signals_started_ = false;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_PROXY_H_
