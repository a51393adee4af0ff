// The pure arithmetic of migration-aware throttling: the options as a worker uses them, a token
// bucket and a request-rate meter that take the time explicitly (tests drive a fake clock), and
// how a proxy-wide budget becomes one worker's share. No I/O, no loop; ThrottleGate
// (throttle_gate.h) applies these on a worker.
//
// Budget split: every worker throttles its own traffic with its own bucket, so nothing is shared
// and nothing locks. With --throttle-rate the proxy-wide rate is divided evenly across workers;
// with --throttle-fraction each worker takes the fraction of its OWN measured rate to the node,
// which sums to the fraction of the proxy's rate however unevenly clients spread over workers.
#ifndef SLOTPILOT_PROXY_THROTTLE_H_
#define SLOTPILOT_PROXY_THROTTLE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace slotpilot::proxy {

struct Config;

struct ThrottleOptions {
  enum class Mode : uint8_t { kOff, kNode, kSlot };
  Mode mode = Mode::kNode;
  double rate = 0;        // ops/s for one source node across the proxy; 0 = use `fraction`
  double fraction = 0.5;  // of the node's rate measured before its throttle started
  uint64_t burst_ms = 100;     // burst allowance: this much time at the budget rate
  uint64_t max_delay_ms = 500; // longest wait for budget; then the request gets an error
  bool exempt_reads = false;
  int workers = 1;
  // Floor of a fraction budget (ops/s across the proxy): a node that served little before the
  // migration has the headroom for it, and a burst of clients arriving at an idle node (e.g.
  // requests released after a repair) must not be turned into throttle errors.
  double min_budget = 1000;
  // A throttle started by ASK replies alone (no watcher confirmation) lifts this long after the
  // last ASK from the node.
  uint64_t evidence_ttl_ms = 2000;
};

const char* ThrottleModeName(ThrottleOptions::Mode mode);
// The throttle-* options of `config`, split for config.threads workers.
ThrottleOptions ThrottleOptionsFromConfig(const Config& config);

// Classic token bucket: `rate` tokens per second up to `burst`; starts full. Times are
// milliseconds of one monotonic clock supplied by the caller.
class TokenBucket {
 public:
  // Sets rate and burst; keeps the tokens already earned (clamped to the new burst).
  void Configure(double rate_per_s, double burst, uint64_t now_ms);
  // Starts over full at `now_ms`.
  void Reset(uint64_t now_ms);
  // Takes one token if there is one.
  bool TryTake(uint64_t now_ms);
  double tokens(uint64_t now_ms);
  double rate() const { return rate_; }
  double burst() const { return burst_; }

 private:
  void Refill(uint64_t now_ms);

  double rate_ = 0;
  double burst_ = 1;
  double tokens_ = 1;
  uint64_t last_ms_ = 0;
};

// Requests per second to one node: Add() per request (a plain increment), Tick() about once a
// second folds the count into `last` (the latest interval's rate) and `average` (an exponentially
// weighted average with a time constant of `tau_ms`).
class RateMeter {
 public:
  explicit RateMeter(uint64_t tau_ms = 5000) : tau_ms_(tau_ms) {}
  void Add(uint64_t n = 1) { count_ += n; }
  // `hold_average`: update `last` only (while throttled, the average keeps the rate before).
  void Tick(uint64_t now_ms, bool hold_average = false);
  double last() const { return last_; }
  double average() const { return average_; }

 private:
  uint64_t tau_ms_;
  uint64_t count_ = 0;
  uint64_t last_tick_ms_ = 0;
  bool started_ = false;
  bool primed_ = false;
  double last_ = 0;
  double average_ = 0;
};

// One worker's share of a source node's budget, in ops/s. `baseline` is this worker's own rate
// to the node before the throttle started (fraction mode only).
double WorkerBudget(const ThrottleOptions& o, double baseline);
// Burst size (tokens) that goes with a budget: burst_ms of it, at least one request.
double BurstFor(const ThrottleOptions& o, double budget);

// What one worker reports about one throttled node (admin JSON and metrics sum these).
struct ThrottleNodeReport {
  std::string address;
  std::vector<uint16_t> slots;  // migrating slots known for the node (a few at most)
  std::string evidence;         // "watcher" or "ask"
  double budget = 0;            // ops/s, this worker's share
  double rate = 0;              // ops/s sent to the node over the last second
  uint64_t waiting = 0;         // requests waiting for budget now
};

// Sums the workers' reports per node.
std::vector<ThrottleNodeReport> MergeThrottleReports(
    const std::vector<std::vector<ThrottleNodeReport>>& per_worker);

// GET /v1/migrations: `migrations_json` (a JSON object) with a "throttled_nodes" array added,
// each {"node", "slots", "evidence", "budget_ops", "rate_ops", "waiting"}.
std::string AddThrottleJson(const std::string& migrations_json,
                            const std::vector<ThrottleNodeReport>& nodes);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_THROTTLE_H_
