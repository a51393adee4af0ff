// Test support: a real redis-server process on a free loopback port, stopped by PID.
//
// Ports are chosen so that port + 10000 (the cluster bus) is also free and both stay below
// 32768, where the kernel's ephemeral range starts.
#ifndef SLOTPILOT_TESTS_SUPPORT_REDIS_SERVER_H_
#define SLOTPILOT_TESTS_SUPPORT_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migration/redis_client.h"

namespace slotpilot::testing {

struct RedisServerOptions {
  bool cluster_enabled = false;
  std::vector<std::string> extra_args;  // e.g. {"--maxmemory", "10mb"}
};

class RedisServer {
 public:
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(RedisServerOptions options = {});
  ~RedisServer();  // SIGTERM, then SIGKILL after 5 s; removes its directory
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // A fresh blocking client connected to this server.
  absl::StatusOr<std::unique_ptr<migration::RedisClient>> Connect() const;

 private:
  RedisServer(int port, pid_t pid, std::string dir) : port_(port), pid_(pid), dir_(std::move(dir)) {}
  bool Reaped();  // true once the process has exited and been waited for

  int port_;
  pid_t pid_;
  bool reaped_ = false;
  std::string dir_;
};

// A port P in [low, high) with P and P + 10000 both bindable on 127.0.0.1 right now.
absl::StatusOr<int> PickFreePortPair(int low = 12000, int high = 22700);

}  // namespace slotpilot::testing

#endif  // SLOTPILOT_TESTS_SUPPORT_REDIS_SERVER_H_
