// RESP values and encoders for the control plane and for replies the proxy writes itself.
//
// RespValue is an owned tree, used off the hot path (topology, cluster view, tests). The encoders
// append to a caller-owned std::string so the data path can reuse its buffers.
#ifndef SLOTPILOT_PROTOCOL_RESP_H_
#define SLOTPILOT_PROTOCOL_RESP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/reply_parser.h"

namespace slotpilot::protocol {

struct RespValue {
  ReplyType type = ReplyType::kNil;
  std::string str;                  // kStatus, kError, kBulk
  int64_t integer = 0;              // kInteger
  std::vector<RespValue> elements;  // kArray

  bool is_error() const { return type == ReplyType::kError; }
  bool is_array() const { return type == ReplyType::kArray; }
};

// Decodes one complete reply from the start of `bytes` (through hiredis). Fails on incomplete
// input (OutOfRange) or malformed input (InvalidArgument). `consumed` (optional) receives the
// reply's length. A nil array decodes as kNil.
absl::StatusOr<RespValue> DecodeReply(std::string_view bytes, size_t* consumed = nullptr);

// Encoders (append to *out). Status and error lines cannot hold CR or LF: they become spaces.
void AppendCommand(std::string* out, absl::Span<const std::string_view> args);  // *N $len ...
void AppendStatus(std::string* out, std::string_view status);                   // +OK
void AppendError(std::string* out, std::string_view error);                     // -ERR ... (CR/LF replaced by spaces)
void AppendInteger(std::string* out, int64_t value);                            // :42
void AppendBulk(std::string* out, std::string_view value);                      // $3 foo
void AppendNil(std::string* out);                                               // $-1
void AppendArrayHeader(std::string* out, int64_t count);                        // *N (-1: nil array)
void AppendValue(std::string* out, const RespValue& value);                     // any tree

// Splits a complete array reply ("*N\r\n" + N elements) into the bytes of its top-level elements
// (each a complete reply, nested arrays included). Fails on anything but an array; a nil array
// gives no elements.
absl::Status SplitArrayElements(std::string_view reply, std::vector<std::string_view>* elements);
// The value of a complete integer reply (":42\r\n"); nullopt for anything else.
std::optional<int64_t> IntegerReply(std::string_view reply);

// Readable one-line rendering for logs and test failure messages.
std::string DebugString(const RespValue& value);

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_RESP_H_
