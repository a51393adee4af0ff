#include "proxy/timer_wheel.h"

#include <cassert>

namespace slotpilot::proxy {

TimerWheel::TimerWheel(uint32_t tick_ms, uint32_t slots) : tick_ms_(tick_ms), slots_(slots) {
  for (Node& head : slots_) head.prev = head.next = &head;
}

// Nodes due in a tick Advance has already passed (or is processing) go into the slot processed
// next, so they are never a whole revolution late.
uint64_t TimerWheel::SlotTickFor(uint64_t due_tick) const {
  uint64_t earliest = current_tick_ != kNoTick ? current_tick_ : next_tick_;
  return due_tick < earliest ? earliest : due_tick;
}

void TimerWheel::Schedule(Node* node, uint64_t due_ms) {
  if (node->scheduled()) Cancel(node);
  node->due_ms = due_ms;
  LinkLast(&slots_[SlotTickFor(due_ms / tick_ms_) % slots_.size()], node);
  ++size_;
}

void TimerWheel::Splice(Node* from, Node* to) {
  if (from->next == from) return;
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  from->next = from->prev = from;
}

void TimerWheel::Unlink(Node* n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = nullptr;
}

void TimerWheel::LinkLast(Node* head, Node* n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

void TimerWheel::Cancel(Node* node) {
  if (!node->scheduled()) return;
  Unlink(node);
  assert(size_ > 0);
  --size_;
}

}  // namespace slotpilot::proxy
