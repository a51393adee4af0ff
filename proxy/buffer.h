// Per-worker byte blocks with intrusive reference counts, and slices into them.
//
// Requests and replies are forwarded as slices of the blocks they were read into: a client's
// request bytes go to the upstream socket, an upstream's reply bytes go to the client socket,
// never re-encoded or copied (except the unparsed tail of a block, moved once when the block
// fills up). A block returns to its pool when the last slice referencing it is released.
//
// Ownership and threads: everything here belongs to one worker and is used from its loop thread
// only, so reference counts are plain integers.
#ifndef SLOTPILOT_PROXY_BUFFER_H_
#define SLOTPILOT_PROXY_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace slotpilot::proxy {

class BlockPool;

class Block {
 public:
  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
  size_t capacity() const { return capacity_; }
  uint32_t refs() const { return refs_; }

  void Ref() { ++refs_; }
  void Unref();

 private:
  friend class BlockPool;
  Block(BlockPool* pool, size_t capacity) : pool_(pool), capacity_(capacity) {}

  BlockPool* pool_;
  size_t capacity_;
  uint32_t refs_ = 0;
};

// Hands out blocks of at least the standard size; keeps a bounded free list of standard blocks so
// steady state allocates nothing, and frees larger blocks at once so memory returns after a big
// value passed through.
class BlockPool {
 public:
  BlockPool(size_t block_size, size_t max_free_blocks);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block with refs() == 1 owned by the caller, of capacity >= min_capacity.
  Block* Get(size_t min_capacity = 0);
  size_t block_size() const { return block_size_; }
  // Bytes currently allocated by this pool (live + free), for metrics.
  size_t allocated_bytes() const { return allocated_bytes_; }
  size_t live_blocks() const { return live_blocks_; }

 private:
  friend class Block;
  void Release(Block* block);

  size_t block_size_;
  size_t max_free_blocks_;
  std::vector<Block*> free_;
  size_t allocated_bytes_ = 0;
  size_t live_blocks_ = 0;
};

// A view of bytes that keeps its block alive. A null block means static or otherwise-owned bytes.
class Slice {
 public:
  Slice() = default;
  Slice(Block* block, const char* data, size_t length) : block_(block), data_(data), length_(length) {
    if (block_ != nullptr) block_->Ref();
  }
  static Slice Static(std::string_view bytes) { return Slice(nullptr, bytes.data(), bytes.size()); }
  ~Slice() { Reset(); }
  Slice(const Slice& other) : Slice(other.block_, other.data_, other.length_) {}
  Slice& operator=(const Slice& other) {
    if (this != &other) *this = Slice(other);
    return *this;
  }
  Slice(Slice&& other) noexcept
      : block_(std::exchange(other.block_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        length_(std::exchange(other.length_, 0)) {}
  Slice& operator=(Slice&& other) noexcept {
    if (this != &other) {
      Reset();
      block_ = std::exchange(other.block_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }

  void Reset() {
    if (block_ != nullptr) block_->Unref();
    block_ = nullptr;
    data_ = nullptr;
    length_ = 0;
  }
  // Drops the first n bytes (after a partial write).
  void RemovePrefix(size_t n) {
    data_ += n;
    length_ -= n;
  }

  const char* data() const { return data_; }
  size_t size() const { return length_; }
  bool empty() const { return length_ == 0; }
  std::string_view view() const { return {data_, length_}; }

 private:
  Block* block_ = nullptr;
  const char* data_ = nullptr;
  size_t length_ = 0;
};

// Small proxy-generated replies (errors, PONG, merged results) are appended to a shared arena
// block and handed out as slices, so they travel the same write path as forwarded bytes.
class ReplyArena {
 public:
  explicit ReplyArena(BlockPool* pool) : pool_(pool) {}
  ~ReplyArena();
  ReplyArena(const ReplyArena&) = delete;
  ReplyArena& operator=(const ReplyArena&) = delete;

  Slice Copy(std::string_view bytes);

 private:
  BlockPool* pool_;
  Block* block_ = nullptr;
  size_t used_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_BUFFER_H_
