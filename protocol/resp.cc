#include "protocol/resp.h"

#include "protocol/strings.h"

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "hiredis.h"

namespace slotpilot::protocol {
namespace {

struct ReaderDeleter {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};
struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReaderPtr = std::unique_ptr<redisReader, ReaderDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// hiredis 0.14 replies are RESP2 only; a nil array ("*-1") arrives as REDIS_REPLY_NIL too.
RespValue Convert(const redisReply& reply) {
  RespValue value;
  switch (reply.type) {
    case REDIS_REPLY_STATUS:
      value.type = ReplyType::kStatus;
      break;
    case REDIS_REPLY_ERROR:
      value.type = ReplyType::kError;
      break;
    case REDIS_REPLY_STRING:
      value.type = ReplyType::kBulk;
      break;
    case REDIS_REPLY_INTEGER:
      value.type = ReplyType::kInteger;
      break;
    case REDIS_REPLY_ARRAY:
      value.type = ReplyType::kArray;
      break;
    default:
      value.type = ReplyType::kNil;
      break;
  }
  if (value.type == ReplyType::kInteger) value.integer = reply.integer;
  if (reply.str != nullptr) value.str.assign(reply.str, reply.len);
  if (value.type == ReplyType::kArray) {
    value.elements.reserve(reply.elements);
    for (size_t i = 0; i < reply.elements; ++i)
      value.elements.push_back(Convert(*reply.element[i]));
  }
  return value;
}

// Appends `text` with CR and LF turned into spaces: a status or error line cannot hold them.
void AppendLine(std::string* out, char type, std::string_view text) {
  const size_t start = out->size() + 1;
  out->push_back(type);
  out->append(text);
  for (size_t i = start; i < out->size(); ++i) {
    if ((*out)[i] == '\r' || (*out)[i] == '\n') (*out)[i] = ' ';
  }
  out->append("\r\n");
}

void AppendLength(std::string* out, char type, int64_t length) {
  out->push_back(type);
  absl::StrAppend(out, length);
  out->append("\r\n");
}

void AppendDebug(std::string* out, const RespValue& value);

void AppendDebugArray(std::string* out, const RespValue& value) {
  out->push_back('[');
  for (size_t i = 0; i < value.elements.size(); ++i) {
    if (i > 0) out->append(", ");
    AppendDebug(out, value.elements[i]);
  }
  out->push_back(']');
}

void AppendDebug(std::string* out, const RespValue& value) {
  switch (value.type) {
    case ReplyType::kStatus:
      absl::StrAppend(out, "+", absl::CEscape(value.str));
      break;
    case ReplyType::kError:
      absl::StrAppend(out, "-", absl::CEscape(value.str));
      break;
    case ReplyType::kInteger:
      absl::StrAppend(out, ":", value.integer);
      break;
    case ReplyType::kBulk:
      absl::StrAppend(out, "\"", absl::CEscape(value.str), "\"");
      break;
    case ReplyType::kNil:
      out->append("nil");
      break;
    case ReplyType::kArray:
      AppendDebugArray(out, value);
      break;
  }
}

}  // namespace

absl::StatusOr<RespValue> DecodeReply(std::string_view bytes, size_t* consumed) {
  ReaderPtr reader(redisReaderCreate());
  if (reader == nullptr) return absl::ResourceExhaustedError("cannot allocate a redisReader");
  if (redisReaderFeed(reader.get(), bytes.data(), bytes.size()) != REDIS_OK) {
    return absl::ResourceExhaustedError("cannot buffer the reply");
  }
  void* raw = nullptr;
  const int rc = redisReaderGetReply(reader.get(), &raw);
  ReplyPtr reply(static_cast<redisReply*>(raw));
  if (rc != REDIS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("malformed reply: ", reader->errstr));
  }
  if (reply == nullptr) {
    return absl::OutOfRangeError(
        absl::StrCat("incomplete reply: ", bytes.size(), " bytes do not hold a whole reply"));
  }
  // The reader may have dropped consumed bytes from its buffer (pos is then rebased), but what
  // it still holds unread is always the tail of `bytes`.
  if (consumed != nullptr) *consumed = bytes.size() - (reader->len - reader->pos);
  return Convert(*reply);
}

void AppendCommand(std::string* out, absl::Span<const std::string_view> args) {
  AppendArrayHeader(out, static_cast<int64_t>(args.size()));
  for (std::string_view arg : args) AppendBulk(out, arg);
}

void AppendStatus(std::string* out, std::string_view status) { AppendLine(out, '+', status); }

void AppendError(std::string* out, std::string_view error) { AppendLine(out, '-', error); }

void AppendInteger(std::string* out, int64_t value) { AppendLength(out, ':', value); }

void AppendBulk(std::string* out, std::string_view value) {
  AppendLength(out, '$', static_cast<int64_t>(value.size()));
  out->append(value);
  out->append("\r\n");
}

void AppendNil(std::string* out) { out->append("$-1\r\n"); }

void AppendArrayHeader(std::string* out, int64_t count) { AppendLength(out, '*', count); }

void AppendValue(std::string* out, const RespValue& value) {
  switch (value.type) {
    case ReplyType::kStatus:
      AppendStatus(out, value.str);
      break;
    case ReplyType::kError:
      AppendError(out, value.str);
      break;
    case ReplyType::kInteger:
      AppendInteger(out, value.integer);
      break;
    case ReplyType::kBulk:
      AppendBulk(out, value.str);
      break;
    case ReplyType::kNil:
      AppendNil(out);
      break;
    case ReplyType::kArray:
      AppendArrayHeader(out, static_cast<int64_t>(value.elements.size()));
      for (const RespValue& element : value.elements) AppendValue(out, element);
      break;
  }
}

std::string DebugString(const RespValue& value) {
  std::string out;
  AppendDebug(&out, value);
  return out;
}

}  // namespace slotpilot::protocol

namespace slotpilot::protocol {

absl::Status SplitArrayElements(std::string_view reply, std::vector<std::string_view>* elements) {
  elements->clear();
  size_t eol = reply.find("\r\n");
  int64_t count = 0;
  if (reply.empty() || reply[0] != '*' || eol == std::string_view::npos ||
      !ParseInt(reply.substr(1, eol - 1), &count)) {
    return absl::InvalidArgumentError("not an array reply");
  }
  if (count <= 0) return absl::OkStatus();
  std::string_view body = reply.substr(eol + 2);
  ReplyFramer framer(/*retain_buffer_bytes=*/0);
  framer.Feed(body.data(), body.size());
  size_t offset = 0;
  ReplyFrame frame;
  for (int64_t i = 0; i < count; ++i) {
    if (framer.Next(&frame) != FrameStatus::kFrame) return absl::InvalidArgumentError("truncated array reply");
    elements->push_back(body.substr(offset, frame.length));
    offset += frame.length;
  }
  return absl::OkStatus();
}

std::optional<int64_t> IntegerReply(std::string_view reply) {
  int64_t value = 0;
  if (reply.size() < 4 || reply[0] != ':' || reply.substr(reply.size() - 2) != "\r\n" ||
      !ParseInt(reply.substr(1, reply.size() - 3), &value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace slotpilot::protocol
