// What a worker needs to know, in the units its loop uses (milliseconds of uv_now, bytes).
// Derived once from the Config; workers never parse or look up configuration themselves.
#ifndef SLOTPILOT_PROXY_WORKER_OPTIONS_H_
#define SLOTPILOT_PROXY_WORKER_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/request_parser.h"
#include "proxy/throttle.h"

namespace slotpilot::proxy {

struct WorkerOptions {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 6379;

  size_t block_size = 16 * 1024;  // read blocks; the unit of pooling
  size_t pool_max_free_blocks = 256;
  size_t pool_max_free_requests = 4096;

  protocol::RequestLimits request_limits;
  size_t max_clients = 10000;
  size_t max_pending_per_client = 1024;
  size_t client_max_input_bytes = 1ull << 30;
  size_t client_max_output_bytes = 512ull << 20;
  uint64_t idle_timeout_ms = 0;  // 0: never
  uint64_t partial_request_timeout_ms = 30000;

  uint64_t request_timeout_ms = 5000;
  int max_redirects = 5;
  uint64_t retry_backoff_min_ms = 10;
  uint64_t retry_backoff_max_ms = 500;

  uint64_t connect_timeout_ms = 1000;
  uint64_t reconnect_backoff_min_ms = 100;
  uint64_t reconnect_backoff_max_ms = 5000;
  size_t upstream_max_pending = 65536;
  std::string upstream_user;
  std::string upstream_password;

  // Redirect loops.
  bool loop_hold = false;  // loop-policy=hold (else error)
  uint64_t loop_hold_timeout_ms = 2000;
  size_t loop_hold_max_requests = 10000;
  uint64_t loop_report_interval_ms = 250;  // per slot, per worker
  size_t loop_tracker_max_slots = 1024;

  // Migration-aware throttling (initial values; Worker::PostThrottleOptions changes them).
  ThrottleOptions throttle;

  std::string client_password;  // empty: clients need no AUTH
  bool allow_admin_commands = false;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_WORKER_OPTIONS_H_
