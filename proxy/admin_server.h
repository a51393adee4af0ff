// The admin HTTP/1.1 endpoint (cpp-httplib): Kubernetes probes, Prometheus metrics, and the JSON
// API operators use to see redirect loops, the slot map, migrations and the configuration.
//
// Threads: the server runs its own small thread pool (cpp-httplib is blocking I/O), separate from
// the workers, so a slow or hostile admin client can never touch the data path. Handlers read only
// thread-safe state through AdminSource. Mutating endpoints need `Authorization: Bearer <token>`.
// GET / is the operator console (proxy/console/, built into the binary); every answer carries a
// strict Content-Security-Policy.
#ifndef SLOTPILOT_PROXY_ADMIN_SERVER_H_
#define SLOTPILOT_PROXY_ADMIN_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "proxy/loop_tracker.h"
#include "proxy/metrics.h"
#include "proxy/topology.h"

namespace httplib {
class Server;
}

namespace slotpilot::proxy {

// What the admin endpoints read and do. Every method may be called from admin threads.
class AdminSource {
 public:
  virtual ~AdminSource() = default;
  virtual TopologySnapshot Topology() const = 0;
  virtual std::vector<MasterHealth> Masters() const = 0;
  virtual std::string TopologyError() const = 0;  // why there is no topology (empty if there is)
  virtual StatsTotals Totals() const = 0;
  virtual ControlMetrics Control() const = 0;
  virtual std::vector<LoopRecord> Loops() const = 0;
  virtual std::vector<std::pair<std::string, std::string>> EffectiveConfig() const = 0;
  // JSON text of {"migrations":[...]}.
  virtual std::string MigrationsJson() const = 0;
  // JSON text of the open slots known to the control plane ([] until the watcher polls).
  virtual std::string OpenSlotsJson() const = 0;
  // JSON text of GET /v1/cluster: every master's health as the watcher's polls see it.
  virtual std::string ClusterJson() const = 0;
  // POST /v1/migrations/{slot}/{finish|rollback}; Unimplemented until a watcher exists.
  virtual absl::Status RequestMigrationAction(uint16_t slot, const std::string& action) = 0;
  virtual std::string LogLevel() const = 0;
  virtual absl::Status SetLogLevel(const std::string& level) = 0;
};

struct AdminServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 9121;
  std::string token;  // empty: mutating endpoints answer 403
  // cpp-httplib holds a thread per connection, also while it idles in keep-alive: enough for
  // probes and scrapes next to an open console tab (which keeps one connection).
  size_t threads = 4;
  size_t max_body_bytes = 64 * 1024;
  size_t max_headers = 64;
};

class AdminServer {
 public:
  AdminServer(AdminServerOptions options, AdminSource* source);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds (failing fast when the port is taken) and serves from a background thread.
  absl::Status Start();
  void Stop();
  uint16_t port() const { return port_; }

 private:
  void ConsoleRoutes();
  void Routes();
  bool Authorized(const std::string& header, int* status, std::string* why) const;

  AdminServerOptions options_;
  AdminSource* source_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};
  uint16_t port_ = 0;
};

// `slotpilot --healthcheck=HOST:PORT`: GET /healthz of a running proxy's admin server with a short
// timeout; OK when it answers 200 (a container HEALTHCHECK needs no curl in the image).
absl::Status ProbeHealthz(const std::string& host, uint16_t port);

// JSON renderings, exposed for tests.
std::string LoopsJson(const std::vector<LoopRecord>& loops, std::optional<uint16_t> slot_filter);
std::string SlotsJson(const TopologySnapshot& topology, const std::string& open_slots_json);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_ADMIN_SERVER_H_
