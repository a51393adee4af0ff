#include "proxy/request.h"

#include "proxy/sub_requests.h"

namespace slotpilot::proxy {

Request::Request() {
  deadline_timer.owner = this;
  retry_timer.owner = this;
}

Request::~Request() = default;

void Request::ResetForReuse() {
  session = nullptr;
  refs = 0;
  bytes.Reset();
  reply.Reset();
  state = RequestState::kNew;
  keyed = false;
  asking = false;
  held = false;
  probing = false;
  retries = 0;
  in_retry = false;
  hold_deadline_ms = 0;
  target_node = -1;
  parent = nullptr;
  child_index = 0;
  group.reset();
  via = nullptr;
  raw_errors = false;
  blocking = false;
  sent_as_eval = false;
  slot = 0;
  command_class = 0;
  node = -1;
  hops.Clear();
}


RequestPool::~RequestPool() {
  while (free_ != nullptr) {
    Request* next = free_->next_free;
    delete free_;
    free_ = next;
  }
}

Request* RequestPool::Get() {
  ++live_;
  if (free_ == nullptr) return new Request();
  Request* r = free_;
  free_ = r->next_free;
  r->next_free = nullptr;
  --free_count_;
  return r;
}

void RequestPool::Put(Request* request) {
  --live_;
  request->ResetForReuse();
  if (free_count_ >= max_free_) {
    delete request;
    return;
  }
  request->next_free = free_;
  free_ = request;
  ++free_count_;
}

}  // namespace slotpilot::proxy
