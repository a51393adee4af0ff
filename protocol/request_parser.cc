// Request framing that accepts and rejects exactly what Redis 7.0 does (networking.c
// processMultibulkBuffer / processInlineBuffer, sds.c sdssplitargs, util.c string2ll): the proxy
// forwards the client's original bytes, so any disagreement on where a request ends would let a
// client smuggle a second command past the framer.
//
// Where we follow Redis, deliberately:
// - After a count line's '\r' one more byte must be present; like Redis we do not check that it
//   is '\n'. Likewise the 2 bytes after a bulk payload are skipped unchecked.
// - Numbers follow string2ll: optional '-', no '+', no spaces, no leading zeros, <= 20 chars.
// - "*0" and negative counts complete with no arguments (the caller skips them).
// - Inline lines end at '\n' (a preceding '\r' is dropped) and are split like sdssplitargs, which
//   stops at a NUL byte: the rest of such a line is ignored.
// Where we differ, deliberately:
// - Line limits are checked against the line itself, not against whatever else is buffered, so
//   the outcome does not depend on how the bytes were split across reads. Up to max_inline_bytes
//   may precede a count line's '\r' or an inline line's '\n' (a '\r' before it counts); one byte
//   more is an error.
// - Redis searches lines with strchr, so a NUL before the terminator makes it wait until the
//   too-big limit; we find the terminator and report the bad number (or split the inline line).
// - max_args also bounds inline requests, with an error text of our own ("too many arguments in
//   request"): Redis has no such check, and with the default limits an inline line cannot reach it.
#include "protocol/request_parser.h"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>
#include <limits>

#include "absl/base/attributes.h"

namespace slotpilot::protocol {
namespace {

constexpr std::string_view kInvalidMultibulkLength = "Protocol error: invalid multibulk length";
constexpr std::string_view kInvalidBulkLength = "Protocol error: invalid bulk length";
constexpr std::string_view kTooBigMbulkCount = "Protocol error: too big mbulk count string";
constexpr std::string_view kTooBigBulkCount = "Protocol error: too big bulk count string";
constexpr std::string_view kTooBigInline = "Protocol error: too big inline request";
constexpr std::string_view kUnbalancedQuotes = "Protocol error: unbalanced quotes in request";
constexpr std::string_view kTooManyInlineArgs = "Protocol error: too many arguments in request";
constexpr std::string_view kExpectedDollarPrefix = "Protocol error: expected '$', got '";

// An argument vector that grew past this for one huge request is released rather than kept
// for the connection's lifetime.
constexpr size_t kRetainedArgsCapacity = 4096;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// isspace() in the C locale, which is what sdssplitargs sees.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  return (c >= 'a' ? c - 'a' : c - 'A') + 10;
}

// Redis's string2ll rules: optional '-', then "0" or a digit 1-9 followed by digits; nothing
// else, at most 20 characters, and the value must fit in int64.
bool ParseInt64(std::string_view s, int64_t* value) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    *value = 0;
    return true;
  }
  const bool negative = s[0] == '-';
  size_t i = negative ? 1 : 0;
  if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  for (; i < s.size(); ++i) {
    if (!IsDigit(s[i])) return false;
    const uint64_t digit = static_cast<uint64_t>(s[i] - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    v = v * 10 + digit;
  }
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (v > kMax + (negative ? 1 : 0)) return false;
  // -v computed in unsigned arithmetic so that INT64_MIN does not overflow.
  *value = negative ? static_cast<int64_t>(~v + 1) : static_cast<int64_t>(v);
  return true;
}

// Splits an inline line into arguments exactly like Redis's sdssplitargs: blanks separate,
// "double quotes" understand \n \r \t \b \a \xHH and \<any>, 'single quotes' only \', a quote
// may open in the middle of a word, and a closing quote must be followed by a blank or the end.
// Decoded bytes are written to `out`, which has room for the whole line (decoding never grows
// it); ArgRefs are offsets from `out`.
class InlineSplitter {
 public:
  InlineSplitter(std::string_view line, char* out, std::vector<ArgRef>* args)
      : p_(line.data()), end_(line.data() + line.size()), base_(out), out_(out), args_(args) {}

  // False on unbalanced quotes.
  bool Split() {
    for (;;) {
      while (p_ < end_ && IsSpace(*p_)) ++p_;
      if (p_ == end_) return true;
      char* const start = out_;
      if (!ReadWord()) return false;
      args_->push_back(
          ArgRef{static_cast<size_t>(start - base_), static_cast<size_t>(out_ - start)});
    }
  }

  // Bytes written to `out`.
  size_t written() const { return static_cast<size_t>(out_ - base_); }

 private:
  bool ReadWord() {
    while (p_ < end_) {
      const char c = *p_++;
      switch (c) {
        case ' ':
        case '\n':
        case '\r':
        case '\t':  // sdssplitargs ends a word on these only
          return true;
        case '"':
          return ReadDoubleQuoted();
        case '\'':
          return ReadSingleQuoted();
        default:
          *out_++ = c;
      }
    }
    return true;
  }

  bool ReadDoubleQuoted() {
    while (p_ < end_) {
      const char c = *p_;
      if (c == '"') return CloseQuote();
      if (c == '\\' && end_ - p_ >= 4 && p_[1] == 'x' && IsHex(p_[2]) && IsHex(p_[3])) {
        *out_++ = static_cast<char>(HexValue(p_[2]) * 16 + HexValue(p_[3]));
        p_ += 4;
      } else if (c == '\\' && end_ - p_ >= 2) {
        *out_++ = Unescape(p_[1]);
        p_ += 2;
      } else {
        *out_++ = c;
        ++p_;
      }
    }
    return false;  // unterminated
  }

  bool ReadSingleQuoted() {
    while (p_ < end_) {
      const char c = *p_;
      if (c == '\'') return CloseQuote();
      if (c == '\\' && end_ - p_ >= 2 && p_[1] == '\'') {
        *out_++ = '\'';
        p_ += 2;
      } else {
        *out_++ = c;
        ++p_;
      }
    }
    return false;  // unterminated
  }

  // *p_ is the closing quote.
  bool CloseQuote() {
    ++p_;
    return p_ == end_ || IsSpace(*p_);
  }

  static char Unescape(char c) {
    switch (c) {
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'b':
        return '\b';
      case 'a':
        return '\a';
      default:
        return c;
    }
  }

  const char* p_;
  const char* end_;
  char* const base_;
  char* out_;
  std::vector<ArgRef>* args_;
};

}  // namespace

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) {}

ParseResult RequestParser::Parse(std::string_view data) {
  if (state_ == State::kStart) {
    if (data.empty()) return ParseResult{};
    BeginRequest(data[0]);
  }
  // The caller must pass the bytes of the pending request again (plus more).
  assert(data.size() >= pos_);
  return inline_ ? ParseInline(data) : ParseMultibulk(data);
}

size_t RequestParser::pending_bulk_remaining() const {
  // pos_ is at the payload's first byte: the payload and its CRLF are still needed.
  return state_ == State::kBulkPayload ? static_cast<size_t>(bulk_length_) + 2 : 0;
}

void RequestParser::Reset() {
  state_ = State::kStart;
  pos_ = 0;
  scanned_ = 0;
  args_expected_ = 0;
  bulk_length_ = -1;
  args_.clear();
  inline_storage_.clear();
}

void RequestParser::BeginRequest(char first_byte) {
  Reset();
  if (args_.capacity() > kRetainedArgsCapacity) std::vector<ArgRef>().swap(args_);
  inline_ = first_byte != '*';  // Redis's own test: anything else is an inline command
  state_ = inline_ ? State::kInline : State::kMultibulkCount;
}

// Flattened: the per-line steps and the fast count-line path are inlined here (measured: about
// 40% fewer cycles for a small SET than with calls), the rare paths are kept out of line.
[[gnu::flatten]] ParseResult RequestParser::ParseMultibulk(std::string_view data) {
  ParseResult result;
  for (;;) {
    Step step = Step::kStop;
    switch (state_) {
      case State::kMultibulkCount:
        step = ReadMultibulkCount(data, &result);
        break;
      case State::kBulkHeader:
        step = ReadBulkHeader(data, &result);
        break;
      case State::kBulkPayload:
        step = ReadBulkPayload(data, &result);
        break;
      case State::kStart:
      case State::kInline:
        assert(false);
        break;
    }
    if (step == Step::kStop) return result;
  }
}

RequestParser::Step RequestParser::ReadMultibulkCount(std::string_view data, ParseResult* result) {
  int64_t count = 0;
  size_t cr = 0;
  switch (ReadCountLine(data, '*', &count, &cr)) {
    case CountLine::kOk:
      break;
    case CountLine::kNeedMore:
      return Step::kStop;
    case CountLine::kTooBig:
      *result = Fail(kTooBigMbulkCount);
      return Step::kStop;
    case CountLine::kBadPrefix:  // cannot happen: BeginRequest saw the '*'
    case CountLine::kBadNumber:
      *result = Fail(kInvalidMultibulkLength);
      return Step::kStop;
  }
  if (count > INT_MAX || (count > 0 && static_cast<uint64_t>(count) > limits_.max_args)) {
    *result = Fail(kInvalidMultibulkLength);
    return Step::kStop;
  }
  pos_ = cr + 2;
  scanned_ = 0;
  if (count <= 0) {
    *result = Complete(pos_);
    return Step::kStop;
  }
  // No reserve(count): a client may announce a million arguments and send two.
  args_expected_ = count;
  state_ = State::kBulkHeader;
  return Step::kNext;
}

RequestParser::Step RequestParser::ReadBulkHeader(std::string_view data, ParseResult* result) {
  int64_t length = 0;
  size_t cr = 0;
  switch (ReadCountLine(data, '$', &length, &cr)) {
    case CountLine::kOk:
      break;
    case CountLine::kNeedMore:
      return Step::kStop;
    case CountLine::kTooBig:
      *result = Fail(kTooBigBulkCount);
      return Step::kStop;
    case CountLine::kBadPrefix:
      *result = FailExpectedDollar(data[pos_]);
      return Step::kStop;
    case CountLine::kBadNumber:
      *result = Fail(kInvalidBulkLength);
      return Step::kStop;
  }
  if (length < 0 || static_cast<uint64_t>(length) > limits_.max_bulk_bytes) {
    *result = Fail(kInvalidBulkLength);
    return Step::kStop;
  }
  pos_ = cr + 2;
  scanned_ = 0;
  bulk_length_ = length;
  state_ = State::kBulkPayload;
  return Step::kNext;
}

RequestParser::Step RequestParser::ReadBulkPayload(std::string_view data, ParseResult* result) {
  // Skipped by length, never scanned; the trailing 2 bytes are not checked (as in Redis).
  const size_t need = static_cast<size_t>(bulk_length_) + 2;
  if (data.size() - pos_ < need) return Step::kStop;
  args_.push_back(ArgRef{pos_, static_cast<size_t>(bulk_length_)});
  pos_ += need;
  bulk_length_ = -1;
  if (args_.size() == static_cast<size_t>(args_expected_)) {
    *result = Complete(pos_);
    return Step::kStop;
  }
  state_ = State::kBulkHeader;
  return Step::kNext;
}

ParseResult RequestParser::ParseInline(std::string_view data) {
  size_t newline = 0;
  switch (FindLineEnd(data, '\n', &newline)) {
    case LineStatus::kNeedMore:
      return ParseResult{};
    case LineStatus::kTooBig:
      return Fail(kTooBigInline);
    case LineStatus::kFound:
      break;
  }
  std::string_view line = data.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // sdssplitargs works on a C string: it stops at the first NUL.
  if (const void* nul = std::memchr(line.data(), '\0', line.size())) {
    line = line.substr(0, static_cast<const char*>(nul) - line.data());
  }
  inline_storage_.resize(line.size());
  InlineSplitter splitter(line, inline_storage_.data(), &args_);
  if (!splitter.Split()) return Fail(kUnbalancedQuotes);
  inline_storage_.resize(splitter.written());
  if (args_.size() > limits_.max_args) return Fail(kTooManyInlineArgs);
  return Complete(newline + 1);
}

// Reads the count line at pos_: "<prefix><integer>\r" plus one more byte. Checks in Redis's
// order: the whole line must be there before its prefix or number is judged.
RequestParser::CountLine RequestParser::ReadCountLine(std::string_view data, char prefix,
                                                      int64_t* value, size_t* cr) {
  if (TryFastCountLine(data, prefix, value, cr)) return CountLine::kOk;
  return ReadCountLineSlow(data, prefix, value, cr);
}

ABSL_ATTRIBUTE_NOINLINE RequestParser::CountLine RequestParser::ReadCountLineSlow(
    std::string_view data, char prefix, int64_t* value, size_t* cr) {
  switch (FindLineEnd(data, '\r', cr)) {
    case LineStatus::kNeedMore:
      return CountLine::kNeedMore;
    case LineStatus::kTooBig:
      return CountLine::kTooBig;
    case LineStatus::kFound:
      break;
  }
  if (*cr + 1 >= data.size()) return CountLine::kNeedMore;  // Redis's "should also contain \n"
  if (data[pos_] != prefix) return CountLine::kBadPrefix;
  assert(*cr > pos_);  // the prefix is not the '\r'
  const std::string_view number = data.substr(pos_ + 1, *cr - pos_ - 1);
  return ParseInt64(number, value) ? CountLine::kOk : CountLine::kBadNumber;
}

// The common well-formed count line "<prefix><1 to 18 digits>\r" plus one more byte, read in one
// pass without memchr. Anything else (signs, leading zeros, bad bytes, incomplete lines, lines
// over the limit) returns false and takes the general path, which decides.
bool RequestParser::TryFastCountLine(std::string_view data, char prefix, int64_t* value,
                                     size_t* cr) const {
  constexpr ptrdiff_t kMaxDigits = 18;  // below 10^18: no overflow check needed
  const char* line = data.data() + pos_;
  const char* end = data.data() + data.size();
  if (end - line < 4 || line[0] != prefix) return false;
  const char* digits = line + 1;
  const char* stop = std::min(end - 1, digits + kMaxDigits);
  const char* p = digits;
  int64_t v = 0;
  for (; p < stop && IsDigit(*p); ++p) v = v * 10 + (*p - '0');
  if (p == stop || *p != '\r' || p == digits) return false;
  if (*digits == '0' && p - digits > 1) return false;
  if (static_cast<size_t>(p - line) > limits_.max_inline_bytes) return false;
  *value = v;
  *cr = static_cast<size_t>(p - data.data());
  return true;
}

// Finds `terminator` in the line starting at pos_, at most max_inline_bytes into it. Resumes
// where the previous call stopped, so a line fed byte by byte is scanned once.
RequestParser::LineStatus RequestParser::FindLineEnd(std::string_view data, char terminator,
                                                     size_t* end) {
  const size_t available = data.size() - pos_;
  const size_t limit = limits_.max_inline_bytes;
  const size_t window = available > limit ? limit + 1 : available;
  const char* base = data.data() + pos_;
  const void* hit = nullptr;
  if (scanned_ < window) hit = std::memchr(base + scanned_, terminator, window - scanned_);
  if (hit == nullptr) {
    scanned_ = window;
    return available > limit ? LineStatus::kTooBig : LineStatus::kNeedMore;
  }
  scanned_ = static_cast<size_t>(static_cast<const char*>(hit) - base);
  *end = pos_ + scanned_;
  return LineStatus::kFound;
}

ParseResult RequestParser::Complete(size_t consumed) {
  state_ = State::kStart;
  pos_ = 0;
  scanned_ = 0;
  return ParseResult{ParseStatus::kComplete, consumed, {}};
}

ParseResult RequestParser::Fail(std::string_view error) {
  state_ = State::kStart;
  pos_ = 0;
  scanned_ = 0;
  bulk_length_ = -1;
  return ParseResult{ParseStatus::kError, 0, error};
}

ParseResult RequestParser::FailExpectedDollar(char got) {
  // Redis's error replies turn CR and LF into spaces so the reply stays one line.
  if (got == '\r' || got == '\n') got = ' ';
  char* out = expected_dollar_error_;
  std::memcpy(out, kExpectedDollarPrefix.data(), kExpectedDollarPrefix.size());
  out[kExpectedDollarPrefix.size()] = got;
  out[kExpectedDollarPrefix.size() + 1] = '\'';
  static_assert(sizeof(expected_dollar_error_) >= kExpectedDollarPrefix.size() + 2);
  return Fail(std::string_view(out, kExpectedDollarPrefix.size() + 2));
}

}  // namespace slotpilot::protocol
