// Acts on each upstream reply: a normal reply (or an error meant for the client) answers the
// request; MOVED updates the worker's slot map, asks for a topology refresh and resends; ASK
// resends to the named node preceded by ASKING, leaving the map alone; TRYAGAIN, CLUSTERDOWN,
// LOADING and MASTERDOWN are retried after a bounded, jittered exponential backoff while the
// request's deadline allows. Every request's chain of redirects is capped at max-redirects.
// Loop thread only.
#ifndef SLOTPILOT_PROXY_REDIRECT_FOLLOWER_H_
#define SLOTPILOT_PROXY_REDIRECT_FOLLOWER_H_

#include <cstdint>
#include <random>
#include <string_view>

#include "protocol/errors.h"
#include "protocol/reply_parser.h"
#include "proxy/buffer.h"
#include "proxy/loop_detector.h"
#include "proxy/request.h"
#include "proxy/router.h"
#include "proxy/stats.h"

namespace slotpilot::proxy {

class Upstream;
class Worker;

class RedirectFollower {
 public:
  explicit RedirectFollower(Worker* worker) : worker_(worker), router_(worker) {}

  // The upstream `from` answered r with `frame` (its bytes in `reply`).
  void OnReply(Upstream* from, Request* r, const protocol::ReplyFrame& frame, Slice reply);
  // The retry timer of r fired.
  void OnRetryDue(Request* r);
  // A new request of a client whose earlier requests wait for a retry (or are being retried)
  // waits behind them, so it cannot overtake them. Returns true when r was deferred that way: it
  // joins the client's retry batch, or is parked until the retried ones are answered.
  bool DeferBehindRetries(Request* r);
  // r, counted in its client's retries_unresolved, is answered or dropped: parked requests of
  // that client go out once none is left.
  void ResolveRetry(Request* r);

  Router& router() { return router_; }

 private:
  void Follow(Upstream* from, Request* r, std::string_view error, Slice reply);
  void OnLoop(Request* r, uint16_t slot, LoopPattern pattern);
  void RetryLater(Request* r, RetryReason reason, Slice reply);
  Slice OnScriptCompileError(Request* r, Slice reply);
  uint64_t RetryDue(const Request* r);
  uint64_t Backoff(uint8_t attempt);

  Worker* worker_;
  Router router_;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_REDIRECT_FOLLOWER_H_
