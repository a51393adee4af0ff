// Incremental framing of client requests: RESP multibulk and inline (telnet-style) commands.
//
// The parser never copies or owns payload bytes: it reports where each argument lies relative to
// the first byte of the request, so the caller can forward the original bytes untouched. It never
// does I/O, never throws, and allocates only when the argument vector outgrows its capacity (the
// vector is reused across requests, so steady state allocates nothing).
//
// Thread-compatible: one parser per client connection.
#ifndef SLOTPILOT_PROTOCOL_REQUEST_PARSER_H_
#define SLOTPILOT_PROTOCOL_REQUEST_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slotpilot::protocol {

// Limits mirror Redis's own (proto-max-bulk-len, PROTO_INLINE_MAX_SIZE); every one is a config
// option of the proxy.
struct RequestLimits {
  size_t max_bulk_bytes = 512u * 1024 * 1024;  // Redis proto-max-bulk-len default
  size_t max_args = 1024 * 1024;               // arguments in one request (inline ones too)
  size_t max_inline_bytes = 64 * 1024;         // inline line / count line without a newline
};

enum class ParseStatus : uint8_t {
  kComplete,  // one request framed: `consumed` bytes, args() valid
  kNeedMore,  // the request is incomplete; call again with the same bytes plus more
  kError,     // protocol error: reply "-ERR <error>" and close the connection (as Redis does)
};

struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t consumed = 0;  // bytes of the framed request (kComplete only)
  // kError only: text in Redis's wording, e.g. "Protocol error: invalid bulk length". Static
  // storage, except "expected '$', got 'x'", which lives in the parser until the next Parse().
  std::string_view error;
};

// Where one argument lies. For multibulk requests `offset` is relative to the first byte of the
// request; for inline requests it is relative to inline_storage() (quotes and escapes decoded).
struct ArgRef {
  size_t offset = 0;
  size_t length = 0;
};

class RequestParser {
 public:
  explicit RequestParser(RequestLimits limits = {});

  // Frames the request that starts at data[0]. Resumable: after kNeedMore, call again with the same
  // request bytes (possibly moved to another buffer) followed by more; the work done is proportional
  // to the new bytes, never to payload sizes. After kComplete or kError the next call starts a new
  // request. A request with no arguments ("*0\r\n", a blank inline line) completes with args()
  // empty: the caller skips it, as Redis does.
  ParseResult Parse(std::string_view data);

  // Arguments of the last kComplete request; valid until the next Parse() or Reset().
  const std::vector<ArgRef>& args() const { return args_; }
  bool is_inline() const { return inline_; }
  // Decoded inline arguments (base of ArgRef offsets when is_inline()).
  std::string_view inline_storage() const { return inline_storage_; }

  // Argument i of the last complete request, given the same `data` passed to Parse().
  std::string_view Arg(std::string_view data, size_t i) const {
    const ArgRef& a = args_[i];
    return (inline_ ? std::string_view(inline_storage_) : data).substr(a.offset, a.length);
  }

  // Bytes already framed of a pending (kNeedMore) request; lets the caller size its buffer.
  size_t pending_bytes() const { return pos_; }
  // When a pending request is inside a bulk payload, the total bytes that bulk still needs beyond
  // pending_bytes() (0 if unknown). Lets the caller grow its buffer once for a big value.
  size_t pending_bulk_remaining() const;

  // Forgets any partial request.
  void Reset();

  const RequestLimits& limits() const { return limits_; }

 private:
  enum class State : uint8_t { kStart, kMultibulkCount, kBulkHeader, kBulkPayload, kInline };
  enum class LineStatus : uint8_t { kFound, kNeedMore, kTooBig };
  enum class CountLine : uint8_t { kOk, kNeedMore, kTooBig, kBadPrefix, kBadNumber };
  enum class Step : uint8_t { kNext, kStop };

  void BeginRequest(char first_byte);
  ParseResult ParseMultibulk(std::string_view data);
  Step ReadMultibulkCount(std::string_view data, ParseResult* result);
  Step ReadBulkHeader(std::string_view data, ParseResult* result);
  Step ReadBulkPayload(std::string_view data, ParseResult* result);
  ParseResult ParseInline(std::string_view data);
  bool TryFastCountLine(std::string_view data, char prefix, int64_t* value, size_t* cr) const;
  CountLine ReadCountLine(std::string_view data, char prefix, int64_t* value, size_t* cr);
  CountLine ReadCountLineSlow(std::string_view data, char prefix, int64_t* value, size_t* cr);
  LineStatus FindLineEnd(std::string_view data, char terminator, size_t* end);
  ParseResult Complete(size_t consumed);
  ParseResult Fail(std::string_view error);
  ParseResult FailExpectedDollar(char got);

  RequestLimits limits_;
  State state_ = State::kStart;
  bool inline_ = false;
  size_t pos_ = 0;              // bytes of the current request already framed
  size_t scanned_ = 0;          // bytes after pos_ known not to hold the line terminator
  int64_t args_expected_ = 0;   // multibulk count of the current request
  int64_t bulk_length_ = -1;    // length of the bulk being read
  std::vector<ArgRef> args_;
  std::string inline_storage_;
  char expected_dollar_error_[48] = {};  // "Protocol error: expected '$', got 'x'"
};

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_REQUEST_PARSER_H_
