// A group of sub-requests that together answer one client request (its "parent"): a split or
// fan-out (FanOut), or a transaction run on a pinned connection (TransactionRun). The parent
// owns the group; the worker tells the group when each child is answered.
#ifndef SLOTPILOT_PROXY_SUB_REQUESTS_H_
#define SLOTPILOT_PROXY_SUB_REQUESTS_H_

namespace slotpilot::proxy {

class Worker;
struct Request;

class SubRequests {
 public:
  virtual ~SubRequests() = default;
  // A child was answered (its reply is in child->reply).
  virtual void OnChildDone(Worker* worker, Request* child) = 0;
  // The parent was answered some other way (deadline, client gone): let go of the children.
  virtual void Abandon(Worker* worker) = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_SUB_REQUESTS_H_
