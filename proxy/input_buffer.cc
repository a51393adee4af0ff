#include "proxy/input_buffer.h"

#include <algorithm>
#include <cstring>

namespace slotpilot::proxy {

std::pair<char*, size_t> InputBuffer::WritableRegion() {
  if (block_ == nullptr) {
    block_ = pool_->Get();
    begin_ = end_ = 0;
  } else if (end_ == block_->capacity()) {
    Settle(/*keep_when_empty=*/true);  // callers settle after every read; this is a safety net
    if (end_ == block_->capacity()) MoveTailToNewBlock(block_->capacity() * 2);
  }
  return {block_->data() + end_, block_->capacity() - end_};
}

Slice InputBuffer::Take(size_t n) {
  Slice s(block_, block_->data() + begin_, n);
  begin_ += n;
  return s;
}

void InputBuffer::Settle(bool keep_when_empty, size_t frame_size_hint) {
  if (block_ == nullptr) return;
  size_t pending = end_ - begin_;
  if (pending == 0) {
    if (keep_when_empty && block_->refs() == 1) {
      begin_ = end_ = 0;  // nobody else reads this block: reuse it from the start
    } else {
      Release();
    }
    return;
  }
  size_t needed = std::max(frame_size_hint, pending);
  size_t free_space = block_->capacity() - end_;
  // Enough room to finish the frame here, or to keep reading a frame of unknown size: stay.
  if (needed <= block_->capacity() - begin_ && (frame_size_hint != 0 || free_space >= pool_->block_size() / 8)) {
    return;
  }
  if (block_->refs() == 1 && needed <= block_->capacity() && pending <= block_->capacity() / 2) {
    std::memmove(block_->data(), block_->data() + begin_, pending);  // cheap: small tail
    begin_ = 0;
    end_ = pending;
    return;
  }
  size_t capacity = frame_size_hint != 0 ? needed : std::max(pool_->block_size(), pending * 2);
  MoveTailToNewBlock(capacity);
}

void InputBuffer::MoveTailToNewBlock(size_t capacity) {
  size_t pending = end_ - begin_;
  Block* fresh = pool_->Get(std::max(capacity, pending + 1));
  if (pending > 0) std::memcpy(fresh->data(), block_->data() + begin_, pending);
  block_->Unref();
  block_ = fresh;
  begin_ = 0;
  end_ = pending;
}

void InputBuffer::Release() {
  if (block_ != nullptr) block_->Unref();
  block_ = nullptr;
  begin_ = end_ = 0;
}

}  // namespace slotpilot::proxy
