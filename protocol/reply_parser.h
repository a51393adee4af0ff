// Framing of server replies (RESP2) through hiredis's redisReader, with an object-function table
// that allocates nothing per element: it only records where each top-level reply ends, its type,
// and for errors the error text. Payload bytes are never inspected (a bulk is skipped by length).
//
// Callers feed the bytes they read from an upstream socket and keep those bytes themselves: a
// frame's `length` tells how many of the fed bytes form the reply, so the original bytes can be
// forwarded without re-encoding. No hiredis type appears in this header.
//
// Thread-compatible: one framer per upstream connection.
#ifndef SLOTPILOT_PROTOCOL_REPLY_PARSER_H_
#define SLOTPILOT_PROTOCOL_REPLY_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace slotpilot::protocol {

enum class ReplyType : uint8_t { kStatus, kError, kInteger, kBulk, kNil, kArray };

struct ReplyFrame {
  ReplyType type = ReplyType::kNil;
  size_t length = 0;       // bytes of the whole top-level reply, including nested elements
  int64_t elements = 0;    // kArray: number of top-level elements (-1 for a nil array)
  // kError: the error text without '-' and CRLF, e.g. "MOVED 3999 127.0.0.1:7002". Valid until
  // the next Feed() or Next() call.
  std::string_view error;
};

enum class FrameStatus : uint8_t { kFrame, kNeedMore, kError };

class ReplyFramer {
 public:
  // `retain_buffer_bytes`: how much reader buffer to keep between replies (avoids re-allocating
  // for every big reply; a bigger buffer is released once the reader is empty).
  explicit ReplyFramer(size_t retain_buffer_bytes = 4u * 1024 * 1024);
  ~ReplyFramer();
  ReplyFramer(const ReplyFramer&) = delete;
  ReplyFramer& operator=(const ReplyFramer&) = delete;

  // Appends (copies) bytes read from the stream. Returns false after a protocol error, or when
  // more than 1 GiB would be buffered unframed (hiredis 0.14 offsets are ints: also an error).
  bool Feed(const char* data, size_t length);
  // Extracts the next complete top-level reply. kError: the stream is corrupt (see error()); the
  // connection must be dropped.
  FrameStatus Next(ReplyFrame* frame);

  // Bytes fed but not yet returned in a frame.
  size_t buffered() const;
  // Why the stream is corrupt once Feed() returned false or Next() kError; empty before. Valid
  // until Reset().
  std::string_view error() const;
  // Forgets buffered bytes and any error, e.g. for a new connection.
  void Reset();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_REPLY_PARSER_H_
