// One client request in flight, pooled per worker.
//
// Lifetime: a Request is taken from its worker's RequestPool when a command is framed and goes
// back when (a) its reply has been written to the client, or (b) the client is gone and no
// upstream or timer still refers to it. `session` is cleared when the client goes away: the
// request then lives on as a "zombie" until its upstream reply arrives, so upstream FIFOs stay
// aligned and its bytes stay valid for any write still in progress.
#ifndef SLOTPILOT_PROXY_REQUEST_H_
#define SLOTPILOT_PROXY_REQUEST_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/buffer.h"
#include "proxy/timer_wheel.h"

namespace slotpilot::proxy {

class ClientSession;
class SubRequests;
class Upstream;

enum class RedirectKind : uint8_t { kMoved, kAsk };

// The nodes a request was redirected through, for the hop cap and loop detection.
class HopChain {
 public:
  static constexpr size_t kMaxHops = 17;  // > the largest allowed max-redirects (16)
  struct Hop {
    uint16_t from_node;  // worker-local node index that answered with the redirect
    uint16_t to_node;
    RedirectKind kind;
  };
  void Add(Hop hop) {
    if (size_ < kMaxHops) hops_[size_++] = hop;
  }
  size_t size() const { return size_; }
  const Hop& operator[](size_t i) const { return hops_[i]; }
  const Hop* begin() const { return hops_.data(); }
  const Hop* end() const { return hops_.data() + size_; }
  void Clear() { size_ = 0; }

 private:
  std::array<Hop, kMaxHops> hops_{};
  uint8_t size_ = 0;
};

enum class RequestState : uint8_t {
  kNew,
  kInFlight,       // queued on or sent to an upstream
  kWaitingRetry,   // backing off after TRYAGAIN / CLUSTERDOWN / LOADING / MASTERDOWN
  kDone,           // reply ready, waiting for its turn in the client's reply order
};

// Reference counted: the client session holds one reference until the reply is written; an
// upstream holds one while the request is in its FIFO; the retry wheel holds one while it waits;
// every sub-request of a split, fan-out or transaction holds one on its parent, so a parent's
// count grows with its width (up to one per slot, or one per queued command: 32 bits, never 8).
struct Request {
  Request();
  ~Request();
  ClientSession* session = nullptr;  // null once the client is gone
  uint32_t refs = 0;
  Slice bytes;                       // the command as sent upstream (original RESP bytes)
  Slice reply;                       // the reply once kDone
  RequestState state = RequestState::kNew;
  bool keyed = false;                // routed by `slot`
  bool asking = false;               // next send is preceded by ASKING (after an ASK)
  bool held = false;                 // parked in a redirect loop (loop-policy hold)
  bool probing = false;              // sent to test whether a held slot still loops
  uint8_t retries = 0;
  bool in_retry = false;             // counted in its client's ClientSession::retries_unresolved
  uint16_t slot = 0;
  uint16_t command_class = 0;        // metrics bucket
  int32_t node = -1;                 // worker-local node the request was last sent to
  int32_t target_node = -1;          // keyless sub-request pinned to one node (fan-out), else -1
  Request* parent = nullptr;         // sub-request of a split or fan-out (holds a reference)
  uint32_t child_index = 0;          // position among the parent's sub-requests
  std::unique_ptr<SubRequests> group;  // when this request is answered by sub-requests
  Upstream* via = nullptr;           // sent on this connection (pinned), never routed
  bool raw_errors = false;           // MOVED/ASK/TRYAGAIN... are its reply, not followed
  bool blocking = false;             // a blocking command: sent on the client's dedicated connection
  bool sent_as_eval = false;         // an EVALSHA sent as EVAL with the body from the ScriptCache
  uint64_t arrival_ms = 0;           // uv_now() at arrival
  uint64_t deadline_ms = 0;          // uv_now() based
  uint64_t hold_deadline_ms = 0;     // when a held request gets the loop error (0: never held)
  uint64_t arrival_ns = 0;           // uv_hrtime() at arrival, for the latency histogram
  HopChain hops;
  TimerWheel::Node deadline_timer;   // answers the client at deadline_ms
  TimerWheel::Node retry_timer;      // resends after a backoff
  Request* next_free = nullptr;

  bool answered() const { return state == RequestState::kDone; }
  // Nobody waits for this request any more: answered, or its client (through its parent, for a
  // sub-request) is gone or already answered.
  bool abandoned() const {
    if (answered()) return true;
    const Request* owner = parent != nullptr ? parent : this;
    return owner->session == nullptr || (parent != nullptr && parent->answered());
  }

  // Back to the state of a new Request (pool reuse).
  void ResetForReuse();
};

// Free list of Requests. Never shrinks below its high-water mark minus `max_free`.
class RequestPool {
 public:
  explicit RequestPool(size_t max_free) : max_free_(max_free) {}
  ~RequestPool();
  RequestPool(const RequestPool&) = delete;
  RequestPool& operator=(const RequestPool&) = delete;

  Request* Get();
  void Put(Request* request);
  size_t live() const { return live_; }

 private:
  Request* free_ = nullptr;
  size_t free_count_ = 0;
  size_t max_free_;
  size_t live_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_REQUEST_H_
