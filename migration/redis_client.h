// A blocking Redis client for the control plane (topology refresh, cluster view, watcher) and
// for tests. Wraps hiredis's synchronous context; replies come back as protocol::RespValue so
// no hiredis type leaves this file. Every call is bounded by the connect/command timeouts.
//
// Never use it on a worker loop: it blocks the calling thread. Thread-compatible.
#ifndef SLOTPILOT_MIGRATION_REDIS_CLIENT_H_
#define SLOTPILOT_MIGRATION_REDIS_CLIENT_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/resp.h"

namespace slotpilot::migration {

struct RedisClientOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{2000};
  std::string username;  // ACL user; empty: default user
  std::string password;  // empty: no AUTH
};

class RedisClient {
 public:
  // Connects and authenticates. Fails with Unavailable on connect errors and timeouts.
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(std::string host, int port,
                                                             RedisClientOptions options = {});
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends one command and waits for its reply. An error reply is a successful call whose value
  // is_error(); transport failures (timeout, EOF, protocol) are a non-OK status, after which the
  // client is broken (ok() == false) and must be reconnected.
  absl::StatusOr<protocol::RespValue> Command(absl::Span<const std::string_view> args);
  absl::StatusOr<protocol::RespValue> Command(std::initializer_list<std::string_view> args) {
    return Command(absl::MakeConstSpan(args.begin(), args.size()));
  }
  // Pipelines several commands and returns their replies in order.
  absl::StatusOr<std::vector<protocol::RespValue>> Pipeline(
      const std::vector<std::vector<std::string>>& commands);

  // Changes the per-command timeout (e.g. for a MIGRATE that may block the server for seconds).
  void SetCommandTimeout(std::chrono::milliseconds timeout);

  bool ok() const;
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  struct Context;
  RedisClient(std::string host, int port, std::unique_ptr<Context> ctx);
  absl::StatusOr<protocol::RespValue> ReadReply();

  std::string host_;
  int port_;
  std::unique_ptr<Context> ctx_;
};

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_REDIS_CLIENT_H_
