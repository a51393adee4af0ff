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

  // Removes every node due at or before now_ms and calls fire(node) for each, earliest tick
  // first; nodes with the same due time fire in the order they were scheduled (the retry path
  // relies on it: a client's requests retried together are resent in the order it sent them).
  // `fire` may schedule or cancel other nodes; a node it schedules as already due fires in this
  // same call.
  template <typename Fire>
  void Advance(uint64_t now_ms, Fire&& fire) {
    uint64_t now_tick = now_ms / tick_ms_;
    if (now_tick < next_tick_) now_tick = next_tick_;  // the clock went backwards
    uint64_t from = next_tick_;
    if (now_tick - from >= slots_.size()) from = now_tick - slots_.size() + 1;  // each slot once
    for (uint64_t t = from;; ++t) {
      current_tick_ = t;
      FireSlot(&slots_[t % slots_.size()], now_ms, fire);
      if (t == now_tick) break;
    }
    // The last tick is visited again next time: its slot may hold nodes due later in that tick.
    next_tick_ = now_tick;
    current_tick_ = kNoTick;
  }

 private:
  static constexpr uint64_t kNoTick = ~uint64_t{0};

  // Fires the due nodes of one slot. The slot's list is detached first so nodes that are not due
  // are put back in one pass; nodes scheduled as due by a callback land in this slot again and
  // are picked up by the next round.
  template <typename Fire>
  void FireSlot(Node* head, uint64_t now_ms, Fire& fire) {
    while (head->next != head) {
      Node pending;
      pending.prev = pending.next = &pending;
      Splice(head, &pending);  // head's nodes now hang off `pending`
      bool fired = false;
      while (pending.next != &pending) {
        Node* n = pending.next;
        Unlink(n);
        if (n->due_ms <= now_ms) {
          --size_;
          fire(n);
          fired = true;
        } else {
          LinkLast(head, n);  // keeps the order of the nodes that wait on
        }
      }
      if (!fired) return;
    }
  }
  static void Splice(Node* from, Node* to);
  static void Unlink(Node* n);
  static void LinkLast(Node* head, Node* n);  // appends n to head's list (FIFO)
  uint64_t SlotTickFor(uint64_t due_tick) const;

  uint32_t tick_ms_;
  std::vector<Node> slots_;  // sentinel heads of circular lists
  uint64_t next_tick_ = 0;            // first tick the next Advance visits
  uint64_t current_tick_ = kNoTick;   // tick being processed inside Advance
  size_t size_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_TIMER_WHEEL_H_
