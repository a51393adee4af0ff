// Every client connected to this process, readable from every worker: what CLIENT LIST, CLIENT
// INFO and INFO's clients section report. A row belongs to one ClientSession and is written only
// by that session's worker, with relaxed atomics (no lock per command). Rows join and leave under
// a mutex at connect and close (never per request), and readers hold that mutex while they look,
// so a row cannot be freed under a reader. The name (CLIENT SETNAME, rare) is guarded by it too.
#ifndef SLOTPILOT_PROXY_CLIENT_REGISTRY_H_
#define SLOTPILOT_PROXY_CLIENT_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "protocol/command_table.h"

namespace slotpilot::proxy {

struct ClientRow {
  enum Flag : uint32_t { kMulti = 1, kPubSub = 2, kBlocked = 4 };

  // Set by the owner before Add(), constant until Remove().
  uint64_t id = 0;
  int64_t fd = -1;
  std::string addr;   // the client's ip:port
  std::string laddr;  // the proxy's ip:port it connected to
  uint64_t created_ms = 0;  // loop clock (uv_now: one monotonic clock for all loops)

  // Written by the owning worker, read by any.
  std::atomic<uint64_t> last_command_ms{0};
  std::atomic<const protocol::CommandInfo*> last_command{nullptr};
  std::atomic<uint32_t> flags{0};
  std::atomic<int32_t> multi_queued{-1};  // commands queued in MULTI; -1 outside MULTI

  void SetFlag(Flag f, bool on) {
    uint32_t v = flags.load(std::memory_order_relaxed);
    flags.store(on ? (v | f) : (v & ~f), std::memory_order_relaxed);
  }
  bool HasFlag(Flag f) const { return (flags.load(std::memory_order_relaxed) & f) != 0; }
};

class ClientRegistry {
 public:
  // The owner's thread. A row is in the registry at most once.
  void Add(ClientRow* row);
  void Remove(ClientRow* row);
  void SetName(ClientRow* row, std::string_view name);

  // Any thread: calls fn(row, name) for every row, in id order, while holding the mutex (keep
  // fn short: it delays connects and closes on every worker).
  void ForEach(absl::FunctionRef<void(const ClientRow&, const std::string& name)> fn) const;
  // Any thread: clients in a blocking command right now.
  int64_t CountBlocked() const;

 private:
  struct Entry {
    ClientRow* row;
    std::string name;
  };
  mutable std::mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);  // ascending id (ids only grow)
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_CLIENT_REGISTRY_H_
