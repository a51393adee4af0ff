// The read side of a connection: bytes are read into a pooled block and framed in place; each
// framed request or reply is taken as a Slice of that block, so it is forwarded without a copy.
//
// Only an incomplete frame at the end of a full block is ever copied: it moves to a fresh block
// (sized for the whole frame when its size is known, else doubled), so a big frame is copied
// O(1) times on average. Loop thread only.
#ifndef SLOTPILOT_PROXY_INPUT_BUFFER_H_
#define SLOTPILOT_PROXY_INPUT_BUFFER_H_

#include <cstddef>
#include <string_view>
#include <utility>

#include "proxy/buffer.h"

namespace slotpilot::proxy {

class InputBuffer {
 public:
  explicit InputBuffer(BlockPool* pool) : pool_(pool) {}
  ~InputBuffer() { Release(); }
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;

  // Where the next read may write (never empty). Allocates a block if there is none.
  std::pair<char*, size_t> WritableRegion();
  // `n` bytes were read into the region returned by WritableRegion().
  void Commit(size_t n) { end_ += n; }

  // Bytes read but not yet taken.
  std::string_view unparsed() const {
    return block_ == nullptr ? std::string_view() : std::string_view(block_->data() + begin_, end_ - begin_);
  }
  size_t buffered() const { return end_ - begin_; }
  // Takes the first n unparsed bytes as a slice that keeps the block alive.
  Slice Take(size_t n);
  // Drops the first n unparsed bytes.
  void Skip(size_t n) { begin_ += n; }

  // Call after framing what was read. If everything was taken, the block is reused in place
  // (when nobody else refers to it and keep_when_empty) or released. If an incomplete frame is
  // left and the block is (nearly) full, the frame moves to a block of at least `frame_size_hint`
  // bytes (0: unknown, the block doubles).
  void Settle(bool keep_when_empty, size_t frame_size_hint = 0);

  // Drops the block (connection closing or idle).
  void Release();

 private:
  void MoveTailToNewBlock(size_t capacity);

  BlockPool* pool_;
  Block* block_ = nullptr;
  size_t begin_ = 0;  // first unparsed byte
  size_t end_ = 0;    // end of bytes read
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_INPUT_BUFFER_H_
