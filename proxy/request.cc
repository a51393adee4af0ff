#include "proxy/request.h"

namespace slotpilot::proxy {

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
