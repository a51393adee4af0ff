#include "proxy/timer_wheel.h"

#include <cassert>

namespace slotpilot::proxy {

TimerWheel::TimerWheel(uint32_t tick_ms, uint32_t slots) : tick_ms_(tick_ms), slots_(slots) {
  for (Node& head : slots_) head.prev = head.next = &head;
}

void TimerWheel::Schedule(Node* node, uint64_t due_ms) {
  if (node->scheduled()) Cancel(node);
  node->due_ms = due_ms;
  uint64_t due_tick = due_ms / tick_ms_;
  // Advance visits the slots from last_tick_ on. A node due before that tick (already due, or
  // scheduled before the first Advance) would wait a whole revolution: start there instead.
  if (last_tick_ == 0 || due_tick < last_tick_) last_tick_ = due_tick;
  Node* head = &slots_[due_tick % slots_.size()];
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
