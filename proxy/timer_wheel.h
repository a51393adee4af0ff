// A hashed timer wheel for per-request deadlines and retry wake-ups: O(1) schedule and cancel
// with intrusive nodes, one loop timer per wheel however many requests wait. Precision is one
// tick. Loop thread only.
#ifndef SLOTPILOT_PROXY_TIMER_WHEEL_H_
#define SLOTPILOT_PROXY_TIMER_WHEEL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace slotpilot::proxy {

class TimerWheel {
 public:
  // Embedded in the object that waits; `owner` points back at it.
  struct Node {
    Node* prev = nullptr;
    Node* next = nullptr;
    uint64_t due_ms = 0;
    void* owner = nullptr;
    bool scheduled() const { return prev != nullptr; }
  };

  TimerWheel(uint32_t tick_ms, uint32_t slots);

  void Schedule(Node* node, uint64_t due_ms);
  void Cancel(Node* node);
  size_t size() const { return size_; }
  uint32_t tick_ms() const { return tick_ms_; }

  // Removes every node due at or before now_ms and calls fire(node) for each. `fire` may schedule
  // or cancel other nodes.
  template <typename Fire>
  void Advance(uint64_t now_ms, Fire&& fire) {
    uint64_t now_tick = now_ms / tick_ms_;
    if (last_tick_ == 0 || now_tick < last_tick_) last_tick_ = now_tick;
    uint64_t from = last_tick_;
    if (now_tick - from >= slots_.size()) from = now_tick - slots_.size() + 1;  // visit each slot once
    for (uint64_t t = from; t <= now_tick; ++t) FireSlot(&slots_[t % slots_.size()], now_ms, fire);
    last_tick_ = now_tick;
  }

 private:
  template <typename Fire>
  void FireSlot(Node* head, uint64_t now_ms, Fire& fire) {
    Node* n = head->next;
    while (n != head) {
      Node* next = n->next;
      if (n->due_ms <= now_ms) {
        Cancel(n);
        fire(n);
        next = head->next;  // fire() may have changed this slot: restart (due nodes are gone)
      }
      n = next;
    }
  }

  uint32_t tick_ms_;
  std::vector<Node> slots_;  // sentinel heads of circular lists
  uint64_t last_tick_ = 0;
  size_t size_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_TIMER_WHEEL_H_
