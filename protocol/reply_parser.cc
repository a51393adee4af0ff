#include "protocol/reply_parser.h"

#include <cstdio>
#include <string>

#include "read.h"  // hiredis 0.14: its types stay in this file.

namespace slotpilot::protocol {
namespace {

// hiredis 0.14 does int arithmetic on buffer offsets (sdsrange(int start), readLine's int length),
// so a reader buffer must stay well below 2 GiB. No Redis reply that a proxy should buffer whole
// comes close (proto-max-bulk-len defaults to 512 MiB).
constexpr size_t kMaxReaderBytes = size_t{1} << 30;

// Reported when a bulk string is not followed by CRLF: hiredis 0.14 skips those two bytes
// unchecked, and a desynchronised stream must not be forwarded as if it were replies.
constexpr char kBadBulkTerminator[] = "Bulk string not terminated by CRLF";

// What the object functions learn about the reply being read. Only the top-level object is
// recorded; nested elements are counted by hiredis and skipped.
struct TopLevel {
  ReplyType type = ReplyType::kNil;
  int64_t elements = 0;
  std::string error_text;  // copied: hiredis may memmove its buffer before GetReply returns
  bool bad_bulk_terminator = false;
};

// hiredis treats a NULL object as out of memory, so every element "is" this one byte.
char sentinel_object;

TopLevel* TopOf(const redisReadTask* task) { return static_cast<TopLevel*>(task->privdata); }

void* CreateString(const redisReadTask* task, char* str, size_t len) {
  TopLevel* top = TopOf(task);
  // hiredis only calls this once the whole bulk and its two trailing bytes are buffered.
  if (task->type == REDIS_REPLY_STRING && (str[len] != '\r' || str[len + 1] != '\n')) {
    top->bad_bulk_terminator = true;
    return nullptr;
  }
  if (task->parent != nullptr) return &sentinel_object;
  top->elements = 0;
  switch (task->type) {
    case REDIS_REPLY_ERROR:
      top->type = ReplyType::kError;
      top->error_text.assign(str, len);
      break;
    case REDIS_REPLY_STATUS:
      top->type = ReplyType::kStatus;
      break;
    default:
      top->type = ReplyType::kBulk;
      break;
  }
  return &sentinel_object;
}

void* CreateArray(const redisReadTask* task, int elements) {
  if (task->parent == nullptr) {
    TopOf(task)->type = ReplyType::kArray;
    TopOf(task)->elements = elements;
  }
  return &sentinel_object;
}

void* CreateInteger(const redisReadTask* task, long long /*value*/) {
  if (task->parent == nullptr) {
    TopOf(task)->type = ReplyType::kInteger;
    TopOf(task)->elements = 0;
  }
  return &sentinel_object;
}

// `$-1` is a nil bulk; `*-1` a nil array, reported as kArray with -1 elements.
void* CreateNil(const redisReadTask* task) {
  if (task->parent == nullptr) {
    const bool nil_array = task->type == REDIS_REPLY_ARRAY;
    TopOf(task)->type = nil_array ? ReplyType::kArray : ReplyType::kNil;
    TopOf(task)->elements = nil_array ? -1 : 0;
  }
  return &sentinel_object;
}

void FreeObject(void* /*object*/) {}

// hiredis takes a non-const table but never writes to it.
constexpr redisReplyObjectFunctions kObjectFunctions = {
    CreateString, CreateArray, CreateInteger, CreateNil, FreeObject};

}  // namespace

struct ReplyFramer::Impl {
  explicit Impl(size_t retain_buffer_bytes) : retain_bytes(retain_buffer_bytes) { CreateReader(); }
  ~Impl() { redisReaderFree(reader); }

  void CreateReader();
  void SetError(const char* text);
  // Bytes fed minus what the reader has not consumed: the stream offset of hiredis's cursor.
  uint64_t Cursor() const { return fed - (reader->len - reader->pos); }

  const size_t retain_bytes;
  redisReader* reader = nullptr;  // owned; null only if creating it ran out of memory
  uint64_t fed = 0;               // bytes fed since construction or Reset()
  uint64_t framed = 0;            // of those, bytes returned in frames
  TopLevel top;
};

void ReplyFramer::Impl::CreateReader() {
  auto* functions = const_cast<redisReplyObjectFunctions*>(&kObjectFunctions);
  reader = redisReaderCreateWithFunctions(functions);
  if (reader == nullptr) return;
  // hiredis frees an empty buffer bigger than maxbuf on the next feed; 0 would mean "never".
  reader->maxbuf = retain_bytes > 0 ? retain_bytes : 1;
  reader->privdata = &top;  // hiredis hands it to every task (its setter macro is not C++)
}

// Puts the reader in its sticky error state, as hiredis does for protocol errors.
void ReplyFramer::Impl::SetError(const char* text) {
  reader->err = REDIS_ERR_PROTOCOL;
  std::snprintf(reader->errstr, sizeof(reader->errstr), "%s", text);
}

ReplyFramer::ReplyFramer(size_t retain_buffer_bytes)
    : impl_(std::make_unique<Impl>(retain_buffer_bytes)) {}

ReplyFramer::~ReplyFramer() = default;

bool ReplyFramer::Feed(const char* data, size_t length) {
  redisReader* reader = impl_->reader;
  if (reader == nullptr || reader->err != 0) return false;
  if (length == 0) return true;
  if (length > kMaxReaderBytes - reader->len) {
    impl_->SetError("More than 1 GiB of unframed reply bytes (hiredis 0.14 limit)");
    return false;
  }
  if (redisReaderFeed(reader, data, length) != REDIS_OK) return false;
  impl_->fed += length;
  return true;
}

FrameStatus ReplyFramer::Next(ReplyFrame* frame) {
  redisReader* reader = impl_->reader;
  if (reader == nullptr) return FrameStatus::kError;
  void* reply = nullptr;
  if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
    // CreateString refused a bulk without CRLF, which hiredis reports as out of memory.
    if (impl_->top.bad_bulk_terminator) impl_->SetError(kBadBulkTerminator);
    return FrameStatus::kError;
  }
  if (reply == nullptr) return FrameStatus::kNeedMore;
  const uint64_t cursor = impl_->Cursor();
  const TopLevel& top = impl_->top;
  frame->type = top.type;
  frame->length = static_cast<size_t>(cursor - impl_->framed);
  frame->elements = top.elements;
  frame->error = top.type == ReplyType::kError ? std::string_view(top.error_text)
                                               : std::string_view();
  impl_->framed = cursor;
  return FrameStatus::kFrame;
}

size_t ReplyFramer::buffered() const { return static_cast<size_t>(impl_->fed - impl_->framed); }

std::string_view ReplyFramer::error() const {
  const redisReader* reader = impl_->reader;
  if (reader == nullptr) return "Out of memory creating the reply reader";
  return reader->err != 0 ? std::string_view(reader->errstr) : std::string_view();
}

void ReplyFramer::Reset() {
  redisReaderFree(impl_->reader);
  impl_->top = TopLevel();
  impl_->fed = 0;
  impl_->framed = 0;
  impl_->CreateReader();
}

}  // namespace slotpilot::protocol
