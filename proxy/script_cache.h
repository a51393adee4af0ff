// The Lua script bodies this proxy has seen (EVAL, EVAL_RO, SCRIPT LOAD), by SHA1.
//
// One Redis has one script cache: after EVAL on any key, EVALSHA works for every key. A cluster
// has one cache per master, so an EVALSHA whose keys live on another master would get NOSCRIPT.
// The proxy remembers the bodies of EVALs it dispatched (outside MULTI; a transaction's when its
// EXEC ran) and sends an EVALSHA of a known body as EVAL, decided when the EVALSHA is dispatched
// so it keeps its place among the client's commands. A body that does not compile is forgotten
// when its error comes back, and an EVALSHA sent as EVAL that gets the compile error is answered
// NOSCRIPT, as Redis (which never cached it) would. SCRIPT EXISTS counts known bodies.
//
// Shared by every worker; touched only by script commands and NOSCRIPT replies, never by the
// rest of the traffic, so a mutex is fine. Bounded by max_bytes: the oldest scripts are forgotten
// first (an EVALSHA of a forgotten script gets NOSCRIPT, which clients already handle).
#ifndef SLOTPILOT_PROXY_SCRIPT_CACHE_H_
#define SLOTPILOT_PROXY_SCRIPT_CACHE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"

namespace slotpilot::proxy {

class ScriptCache {
 public:
  explicit ScriptCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The lower-case hex SHA1 Redis names a script by.
  static std::string Sha1Hex(std::string_view body);

  void Remember(std::string_view body);
  // The body of the script named `sha` (any case), if remembered.
  std::optional<std::string> Find(std::string_view sha) const;
  bool Contains(std::string_view sha) const;
  // A body no master could compile: Redis never caches it, so neither does the proxy.
  void Forget(std::string_view sha);
  // SCRIPT FLUSH: what the masters forget, the proxy forgets too.
  void Clear();

  // Changes whenever a script is forgotten; workers key their "already remembered" memo on it.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  size_t bytes() const;
  size_t size() const;

 private:
  const size_t max_bytes_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::string> bodies_;  // sha -> body
  std::deque<std::string> order_;                         // shas, oldest first
  size_t bytes_ = 0;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_SCRIPT_CACHE_H_
