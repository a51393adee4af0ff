#include "proxy/redirect_follower.h"

#include <algorithm>
#include <string>

#include "protocol/resp.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {
using protocol::ErrorKind;

// The client a request answers to (a sub-request answers through its parent); null once gone.
ClientSession* OwnerSession(const Request* r) {
  return r->parent != nullptr ? r->parent->session : r->session;
}
}  // namespace

void RedirectFollower::OnReply(Upstream* from, Request* r, const protocol::ReplyFrame& frame,
                               Slice reply) {
  if (r->abandoned()) return;  // timed out, or the client is gone
  if (frame.type != protocol::ReplyType::kError) {
    if (r->probing) worker_->holder().OnProbeResolved(r);
    worker_->Complete(r, std::move(reply), /*is_error=*/false);
    return;
  }
  if (r->raw_errors) {  // a transaction's command: its owner reads redirects itself
    worker_->Complete(r, std::move(reply), /*is_error=*/true);
    return;
  }
  switch (protocol::ClassifyError(frame.error)) {
    case ErrorKind::kMoved:
    case ErrorKind::kAsk:
      Follow(from, r, frame.error, std::move(reply));
      return;
    case ErrorKind::kTryAgain:
      RetryLater(r, RetryReason::kTryAgain, std::move(reply));
      return;
    case ErrorKind::kClusterDown:
      worker_->RequestTopologyRefresh("CLUSTERDOWN reply");
      RetryLater(r, RetryReason::kClusterDown, std::move(reply));
      return;
    case ErrorKind::kLoading:
      RetryLater(r, RetryReason::kLoading, std::move(reply));
      return;
    case ErrorKind::kMasterDown:
      RetryLater(r, RetryReason::kMasterDown, std::move(reply));
      return;
    default:
      if (frame.error.substr(0, 26) == "ERR Error compiling script") {
        reply = OnScriptCompileError(r, std::move(reply));
      }
      if (r->probing) worker_->holder().OnProbeResolved(r);  // the slot answers again
      worker_->Complete(r, std::move(reply), /*is_error=*/true);
  }
}

void RedirectFollower::Follow(Upstream* from, Request* r, std::string_view error, Slice reply) {
  absl::StatusOr<protocol::Redirect> redirect = protocol::ParseRedirect(error);
  if (!redirect.ok() || redirect->endpoint_unknown()) {
    worker_->Complete(r, std::move(reply), /*is_error=*/true);  // nothing we can follow
    return;
  }
  RoutingTable& table = worker_->routing();
  std::string_view host = redirect->endpoint_is_same_host() ? std::string_view(from->host())
                                                            : redirect->host;
  uint16_t target = table.FindOrAddNode(host, redirect->port);
  if (target == RoutingTable::kNoNode) {  // the node table is full: pass the redirect on
    worker_->RequestTopologyRefresh("node table full");
    worker_->Complete(r, std::move(reply), /*is_error=*/true);
    return;
  }
  bool ask = redirect->kind == ErrorKind::kAsk;
  r->hops.Add({from->node(), target, ask ? RedirectKind::kAsk : RedirectKind::kMoved});
  (ask ? worker_->stats().redirects_ask : worker_->stats().redirects_moved).Add();
  LoopPattern pattern = ClassifyChain(r->hops, worker_->options().max_redirects);
  if (pattern != LoopPattern::kNone) {
    OnLoop(r, redirect->slot, pattern);
    return;
  }
  if (!ask) {
    if (table.SetSlot(redirect->slot, target)) worker_->RequestTopologyRefresh("MOVED reply");
  } else {
    worker_->throttle().OnAskEvidence(from->node(), redirect->slot);  // `from` is migrating it
  }
  r->asking = ask;
  router_.SendTo(r, target);
}

// "ERR Error compiling script": Redis never cached that body. The ScriptCache forgets it, and an
// EVALSHA the proxy sent as EVAL gets what Redis answers an EVALSHA of an uncached script.
Slice RedirectFollower::OnScriptCompileError(Request* r, Slice reply) {
  ScriptCache* scripts = worker_->shared().scripts;
  if (scripts == nullptr) return reply;
  absl::StatusOr<protocol::RespValue> command = protocol::DecodeReply(r->bytes.view());
  if (command.ok() && command->elements.size() > 1 &&
      (EqualsIgnoreCase(command->elements[0].str, "eval") ||
       EqualsIgnoreCase(command->elements[0].str, "eval_ro"))) {
    scripts->Forget(ScriptCache::Sha1Hex(command->elements[1].str));
  }
  if (!r->sent_as_eval) return reply;
  return Slice::Static("-NOSCRIPT No matching script. Please use EVAL.\r\n");
}

// r's redirect chain loops: count it, tell the control thread, then answer or hold r.
void RedirectFollower::OnLoop(Request* r, uint16_t slot, LoopPattern pattern) {
  RoutingTable& table = worker_->routing();
  std::string chain = DescribeChain(r->hops, [&](uint16_t n) { return table.node(n).address; });
  std::string error = StrCat("TRYAGAIN slot ", slot, " is in a redirect loop (", chain,
                             "): ", LoopPatternMeaning(pattern));
  r->slot = slot;
  if (!r->probing) worker_->RecordLoop(r, slot, pattern, chain);
  if (worker_->options().loop_hold && worker_->holder().Hold(r, error)) return;
  worker_->CompleteWithError(r, error);
}

uint64_t RedirectFollower::Backoff(uint8_t attempt) {
  const WorkerOptions& o = worker_->options();
  uint64_t base = o.retry_backoff_min_ms << std::min<uint8_t>(attempt, 20);
  base = std::min(base, o.retry_backoff_max_ms);
  // Full jitter in [base/2, base]: many sidecars retrying the same slot spread out.
  return base / 2 + rng_() % (base / 2 + 1);
}

// A client's retries go in batches. A request that needs one while its client already has a batch
// waiting joins that batch instead of drawing its own jittered delay, and new requests of that
// client wait for the batch too (DeferBehindRetries). Replies (hence retries) arrive in the
// client's order and the wheel fires a tick first-in first-out, so a batch is resent in the order
// the client sent it: retries never reorder a client's commands. (With a delay per request, 300
// pipelined RPUSHes answered CLUSTERDOWN ran shuffled: tests/integration, RetryOrderTest.)
uint64_t RedirectFollower::RetryDue(const Request* r) {
  uint64_t now = worker_->now_ms();
  const ClientSession* s = OwnerSession(r);
  if (s != nullptr && s->retry_batch_due_ms > now) return s->retry_batch_due_ms;
  return now + Backoff(r->retries);
}

bool RedirectFollower::DeferBehindRetries(Request* r) {
  ClientSession* s = OwnerSession(r);
  if (s == nullptr) return false;
  if (s->has_parked()) {  // behind older requests that wait already
    s->Park(r);
    return true;
  }
  if (s->retry_batch_due_ms > worker_->now_ms()) {
    r->state = RequestState::kWaitingRetry;
    worker_->ScheduleRetry(r, s->retry_batch_due_ms);
    return true;
  }
  if (s->retries_unresolved > 0) {  // retried commands are in flight: wait for their outcome
    s->Park(r);
    return true;
  }
  return false;
}

void RedirectFollower::ResolveRetry(Request* r) {
  r->in_retry = false;
  ClientSession* s = OwnerSession(r);
  if (s == nullptr || s->retries_unresolved == 0) return;
  if (--s->retries_unresolved == 0) s->UnparkAll();
}

void RedirectFollower::RetryLater(Request* r, RetryReason reason, Slice reply) {
  uint64_t due = RetryDue(r);
  if (due >= r->deadline_ms || r->retries == 255) {
    worker_->Complete(r, std::move(reply), /*is_error=*/true);  // out of time: pass the error on
    return;
  }
  ClientSession* s = OwnerSession(r);
  if (s != nullptr) {
    s->retry_batch_due_ms = due;
    if (!r->in_retry) {
      r->in_retry = true;
      ++s->retries_unresolved;
    }
  }
  worker_->stats().retries[static_cast<size_t>(reason)].Add();
  ++r->retries;
  r->asking = false;  // a retry starts from the slot map again: a new attempt, a new hop chain
  r->hops.Clear();    // (else ASK + TRYAGAIN during a healthy migration counts as a hop-limit loop)
  r->state = RequestState::kWaitingRetry;
  worker_->ScheduleRetry(r, due);
}

void RedirectFollower::OnRetryDue(Request* r) {
  if (r->held) {
    worker_->holder().Expire(r);
    return;
  }
  if (r->abandoned()) {
    if (r->in_retry) ResolveRetry(r);
    return;
  }
  router_.Route(r);
}

}  // namespace slotpilot::proxy
