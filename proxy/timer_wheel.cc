#include "proxy/timer_wheel.h"

#include <cassert>

namespace slotpilot::proxy {

TimerWheel::TimerWheel(uint32_t tick_ms, uint32_t slots) : tick_ms_(tick_ms), slots_(slots) {
  for (Node& head : slots_) head.prev = head.next = &head;
}

void TimerWheel::Schedule(Node* node, uint64_t due_ms) {
  if (node->scheduled()) Cancel(node);
  node->due_ms = due_ms;
  Node* head = &slots_[(due_ms / tick_ms_) % slots_.size()];
  node->next = head->next;
  node->prev = head;
  head->next->prev = node;
  head->next = node;
  ++size_;
}

void TimerWheel::Cancel(Node* node) {
  if (!node->scheduled()) return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node->next = nullptr;
  assert(size_ > 0);
  --size_;
}

}  // namespace slotpilot::proxy
