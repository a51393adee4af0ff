// A FIFO on a power-of-two ring that grows by doubling and never shrinks: after warm-up, push and
// pop allocate nothing (std::deque allocates and frees a chunk every few hundred elements).
#ifndef SLOTPILOT_PROXY_RING_BUFFER_H_
#define SLOTPILOT_PROXY_RING_BUFFER_H_

#include <cassert>
#include <cstddef>
#include <utility>
#include <vector>

namespace slotpilot::proxy {

template <typename T>
class RingBuffer {
 public:
  explicit RingBuffer(size_t initial_capacity = 16) : slots_(RoundUp(initial_capacity)) {}

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

  T& front() {
    assert(size_ > 0);
    return slots_[head_];
  }
  T& back() {
    assert(size_ > 0);
    return slots_[(head_ + size_ - 1) & (slots_.size() - 1)];
  }
  T& operator[](size_t i) { return slots_[(head_ + i) & (slots_.size() - 1)]; }
  const T& operator[](size_t i) const { return slots_[(head_ + i) & (slots_.size() - 1)]; }

  void push_back(T value) {
    if (size_ == slots_.size()) Grow();
    slots_[(head_ + size_) & (slots_.size() - 1)] = std::move(value);
    ++size_;
  }
  void push_front(T value) {
    if (size_ == slots_.size()) Grow();
    head_ = (head_ + slots_.size() - 1) & (slots_.size() - 1);
    slots_[head_] = std::move(value);
    ++size_;
  }
  T pop_front() {
    assert(size_ > 0);
    T value = std::move(slots_[head_]);
    slots_[head_] = T();
    head_ = (head_ + 1) & (slots_.size() - 1);
    --size_;
    return value;
  }
  void clear() {
    while (!empty()) pop_front();
  }

 private:
  static size_t RoundUp(size_t n) {
    size_t c = 1;
    while (c < n) c <<= 1;
    return c;
  }
  void Grow() {
    std::vector<T> bigger(slots_.size() * 2);
    for (size_t i = 0; i < size_; ++i) bigger[i] = std::move((*this)[i]);
    slots_.swap(bigger);
    head_ = 0;
  }

  std::vector<T> slots_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_RING_BUFFER_H_
