// Fuzzes RequestParser the way a client session drives it. Input: byte 0 picks the limits (small
// ones, so limit errors are reached), byte 1 seeds the chunk sizes, the rest is the client's byte
// stream. The stream is fed in chunks; after each chunk every complete request is framed and
// dropped from the buffer (so the pending bytes move, as they will in a real session).
// Checks:
// - consumed <= buffered bytes; every argument lies inside its request (multibulk) or inside
//   inline_storage() (inline); argument count, bulk sizes and inline size within the limits;
// - a framed request re-framed alone gives the same arguments, and without its last byte needs
//   more;
// - while pending, pending_bytes() <= buffered bytes and pending_bulk_remaining() is bounded;
// - errors are Redis's "Protocol error: ..." texts;
// - the requests framed and the final error do not depend on the chunking: the chunked session
//   frames exactly what a session fed everything at once frames.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/request_parser.h"

namespace {

using slotpilot::protocol::ParseResult;
using slotpilot::protocol::ParseStatus;
using slotpilot::protocol::RequestLimits;
using slotpilot::protocol::RequestParser;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

struct Request {
  std::vector<std::string> args;
  bool is_inline = false;
  size_t consumed = 0;
  bool operator==(const Request&) const = default;
};

struct Session {
  std::vector<Request> requests;
  std::string error;
  size_t leftover = 0;
};

RequestLimits PickLimits(uint8_t selector) {
  RequestLimits limits;
  switch (selector % 4) {
    case 0:
      limits = {8, 4, 8};
      break;
    case 1:
      limits = {64, 16, 32};
      break;
    case 2:
      limits = {1024, 128, 256};
      break;
    default:
      break;  // the defaults
  }
  return limits;
}

// Copies out the last framed request, checking that it stays inside its bounds.
Request Extract(const RequestParser& parser, std::string_view buffer, const ParseResult& result) {
  const RequestLimits& limits = parser.limits();
  FUZZ_CHECK(result.consumed > 0 && result.consumed <= buffer.size());
  FUZZ_CHECK(parser.args().size() <= limits.max_args);
  const std::string_view base =
      parser.is_inline() ? parser.inline_storage() : buffer.substr(0, result.consumed);
  if (parser.is_inline()) FUZZ_CHECK(base.size() <= limits.max_inline_bytes);
  Request request{{}, parser.is_inline(), result.consumed};
  for (size_t i = 0; i < parser.args().size(); ++i) {
    const auto& arg = parser.args()[i];
    FUZZ_CHECK(arg.offset <= base.size() && arg.length <= base.size() - arg.offset);
    if (!parser.is_inline()) FUZZ_CHECK(arg.length <= limits.max_bulk_bytes);
    request.args.emplace_back(parser.Arg(buffer, i));
  }
  return request;
}

// The request alone, with a fresh parser, frames the same; one byte short, it needs more.
void CheckReframes(const Request& request, std::string_view buffer, const RequestLimits& limits) {
  const std::string alone(buffer.substr(0, request.consumed));
  RequestParser parser(limits);
  FUZZ_CHECK(parser.Parse(std::string_view(alone).substr(0, alone.size() - 1)).status ==
             ParseStatus::kNeedMore);
  const ParseResult result = parser.Parse(alone);
  FUZZ_CHECK(result.status == ParseStatus::kComplete);
  FUZZ_CHECK(Extract(parser, alone, result) == request);
}

// Frames every complete request in *buffer. Returns false once the session hit an error.
bool Drain(RequestParser& parser, std::string* buffer, Session* session) {
  for (;;) {
    const ParseResult result = parser.Parse(*buffer);
    if (result.status == ParseStatus::kNeedMore) {
      FUZZ_CHECK(parser.pending_bytes() <= buffer->size());
      FUZZ_CHECK(parser.pending_bulk_remaining() <= parser.limits().max_bulk_bytes + 2);
      return true;
    }
    if (result.status == ParseStatus::kError) {
      FUZZ_CHECK(result.error.substr(0, 16) == "Protocol error: ");
      session->error = std::string(result.error);
      return false;
    }
    Request request = Extract(parser, *buffer, result);
    CheckReframes(request, *buffer, parser.limits());
    session->requests.push_back(std::move(request));
    buffer->erase(0, result.consumed);  // the pending bytes move to the buffer's front
  }
}

// chunk_seed 0: the whole stream at once; otherwise chunks of pseudo-random sizes.
Session RunSession(std::string_view stream, const RequestLimits& limits, uint8_t chunk_seed) {
  RequestParser parser(limits);
  Session session;
  std::string buffer;
  const size_t max_chunk = chunk_seed % 16 + 1;
  uint32_t state = chunk_seed;
  for (size_t fed = 0; fed < stream.size();) {
    state = state * 1103515245u + 12345u;
    size_t chunk = chunk_seed == 0 ? stream.size() : 1 + (state >> 16) % max_chunk;
    chunk = std::min(chunk, stream.size() - fed);
    buffer.append(stream.substr(fed, chunk));
    fed += chunk;
    if (!Drain(parser, &buffer, &session)) return session;
  }
  session.leftover = buffer.size();
  return session;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const RequestLimits limits = PickLimits(data[0]);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);
  const Session whole = RunSession(stream, limits, 0);
  const Session chunked = RunSession(stream, limits, data[1] == 0 ? 1 : data[1]);
  FUZZ_CHECK(whole.requests == chunked.requests);
  FUZZ_CHECK(whole.error == chunked.error);
  FUZZ_CHECK(whole.leftover == chunked.leftover);
  return 0;
}
