#include "proxy/buffer.h"

#include <cassert>
#include <cstring>
#include <new>

namespace slotpilot::proxy {

void Block::Unref() {
  assert(refs_ > 0);
  if (--refs_ == 0) pool_->Release(this);
}

BlockPool::BlockPool(size_t block_size, size_t max_free_blocks)
    : block_size_(block_size), max_free_blocks_(max_free_blocks) {
  free_.reserve(max_free_blocks_);
}

BlockPool::~BlockPool() {
  // Blocks still referenced at this point belong to objects the owner failed to release; they
  // are not freed here (their Unref would touch a dead pool), which leak checkers will report.
  for (Block* b : free_) ::operator delete(b);
}

Block* BlockPool::Get(size_t min_capacity) {
  Block* block;
  if (min_capacity <= block_size_ && !free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    size_t capacity = min_capacity <= block_size_ ? block_size_ : min_capacity;
    void* memory = ::operator new(sizeof(Block) + capacity);
    block = new (memory) Block(this, capacity);
    allocated_bytes_ += capacity;
  }
  ++live_blocks_;
  block->refs_ = 1;
  return block;
}

void BlockPool::Release(Block* block) {
  --live_blocks_;
  if (block->capacity_ == block_size_ && free_.size() < max_free_blocks_) {
    free_.push_back(block);
    return;
  }
  allocated_bytes_ -= block->capacity_;
  ::operator delete(block);
}

ReplyArena::~ReplyArena() {
  if (block_ != nullptr) block_->Unref();
}

Slice ReplyArena::Copy(std::string_view bytes) {
  if (block_ == nullptr || block_->capacity() - used_ < bytes.size()) {
    if (block_ != nullptr) block_->Unref();
    block_ = pool_->Get(bytes.size());
    used_ = 0;
  }
  char* dst = block_->data() + used_;
  if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
  used_ += bytes.size();
  return Slice(block_, dst, bytes.size());
}

}  // namespace slotpilot::proxy
