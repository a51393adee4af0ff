// The embedded migration watcher on the control plane: owns the Watcher (its own thread), the
// Finisher that repairs and the Lease that makes one sidecar act per slot, and bridges them to
// the proxy: loop reports become evidence, repaired slots become a new MigrationState for the
// workers (held requests retry), and the watcher's status becomes admin JSON and metrics.
//
// Threads: every public method may be called from any thread (admin, control loop).
#ifndef SLOTPILOT_PROXY_MIGRATION_CONTROLLER_H_
#define SLOTPILOT_PROXY_MIGRATION_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "migration/cluster_view.h"
#include "migration/finisher.h"
#include "migration/lease.h"
#include "migration/watcher.h"
#include "proxy/migration_state.h"
#include "proxy/topology.h"

namespace slotpilot::proxy {

struct MigrationControllerOptions {
  migration::WatcherMode mode = migration::WatcherMode::kObserve;
  std::vector<migration::Endpoint> seeds;
  migration::RedisClientOptions client;
  absl::Duration stall_timeout = absl::Seconds(60);
  std::string sidecar_id;  // unique per proxy process
  migration::FinisherOptions finisher;
};

// Prometheus-facing numbers of the watcher.
struct WatcherMetrics {
  bool enabled = false;
  std::string mode;
  uint64_t polls = 0;
  uint64_t poll_failures = 0;
  uint64_t open_slots = 0;
  uint64_t stuck_slots = 0;
  std::map<std::string, uint64_t> verdicts;
  uint64_t actions_started = 0;
  uint64_t actions_succeeded = 0;
  uint64_t actions_failed = 0;
  uint64_t actions_deferred = 0;
  uint64_t keys_moved = 0;
  uint64_t bytes_moved = 0;
  bool cluster_healthy = false;
  std::vector<migration::MasterHealth> masters;
  std::vector<migration::ReplicaView> replicas;
  uint64_t flagged_nodes = 0;
  std::vector<std::pair<uint16_t, double>> stuck_seconds;  // slot -> seconds (stuck slots only)
  std::vector<migration::OpenSlotAge> open_slot_ages;
};

class MigrationController {
 public:
  using PublishState = std::function<void(MigrationStateSnapshot)>;
  using CurrentTopology = std::function<TopologySnapshot()>;

  MigrationController(MigrationControllerOptions options, PublishState publish,
                      CurrentTopology topology);
  ~MigrationController();

  void Start();
  void Stop();
  void SetMode(migration::WatcherMode mode);
  void OnLoopEvidence(uint16_t slot);
  // POST /v1/migrations/{slot}/{finish|rollback}.
  absl::Status RequestAction(uint16_t slot, const std::string& action);

  std::string MigrationsJson() const;   // {"mode":..., "migrations":[...]}
  std::string ClusterJson() const;      // GET /v1/cluster
  std::string OpenSlotsJson() const;    // for /v1/slots
  WatcherMetrics Metrics() const;

 private:
  void OnPublish(const std::shared_ptr<const migration::WatcherStatus>& status);
  std::string LeaseHolder(uint16_t slot);
  std::string PreviousOwner(uint16_t slot) const;

  MigrationControllerOptions options_;
  PublishState publish_;
  CurrentTopology topology_;
  std::unique_ptr<migration::ClusterView> finisher_view_;
  std::unique_ptr<migration::Lease> lease_;
  std::unique_ptr<migration::Finisher> finisher_;
  std::unique_ptr<migration::Watcher> watcher_;
  std::vector<MigrationState::OpenSlot> OpenSlots(const migration::WatcherStatus& status) const;

  uint64_t published_repairs_ = 0;  // watcher thread only
  std::map<uint16_t, uint32_t> published_generation_;        // watcher thread only
  std::vector<MigrationState::OpenSlot> published_open_;     // watcher thread only
  uint64_t state_version_ = 0;      // watcher thread only
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_MIGRATION_CONTROLLER_H_
