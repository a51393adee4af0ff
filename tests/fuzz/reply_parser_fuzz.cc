// Fuzzes ReplyFramer with the input fed in chunks whose sizes the input chooses. Checks, until an
// error: frame lengths plus buffered() add up to the bytes fed; every frame re-framed alone gives
// the same single frame; and the frames do not depend on the chunking (feeding everything at once
// gives the same frames and the same error).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_parser.h"

namespace {

using slotpilot::protocol::FrameStatus;
using slotpilot::protocol::ReplyFrame;
using slotpilot::protocol::ReplyFramer;

struct Frame {
  ReplyFrame frame;
  std::string error;  // frame.error copied: the view dies at the next call
};

struct Run {
  std::vector<Frame> frames;
  bool failed = false;
};

void Check(bool condition) {
  if (!condition) std::abort();
}

bool SameFrame(const Frame& a, const Frame& b) {
  return a.frame.type == b.frame.type && a.frame.length == b.frame.length &&
         a.frame.elements == b.frame.elements && a.error == b.error;
}

// Drains complete frames; false after an error. Checks the byte accounting after each call.
bool Drain(ReplyFramer& framer, size_t fed, size_t* framed, Run* run) {
  for (;;) {
    Frame frame;
    const FrameStatus status = framer.Next(&frame.frame);
    if (status == FrameStatus::kError) {
      Check(!framer.error().empty());
      run->failed = true;
      return false;
    }
    if (status == FrameStatus::kFrame) {
      Check(frame.frame.length > 0);
      *framed += frame.frame.length;
    }
    Check(*framed + framer.buffered() == fed);
    if (status == FrameStatus::kNeedMore) return true;
    frame.error = std::string(frame.frame.error);
    run->frames.push_back(std::move(frame));
  }
}

// The input chooses each chunk: a byte with the top bit set feeds the rest, else 1..16 bytes.
size_t ChunkAt(std::string_view input, size_t at) {
  const uint8_t b = static_cast<uint8_t>(input[at]);
  const size_t rest = input.size() - at;
  return (b & 0x80) != 0 ? rest : std::min<size_t>(rest, 1 + (b ^ (at & 0xff)) % 16);
}

Run FeedInChunks(std::string_view input) {
  ReplyFramer framer(/*retain_buffer_bytes=*/4096);
  Run run;
  size_t fed = 0;
  size_t framed = 0;
  while (fed < input.size()) {
    const size_t n = ChunkAt(input, fed);
    if (!framer.Feed(input.data() + fed, n)) {
      run.failed = true;
      break;
    }
    fed += n;
    if (!Drain(framer, fed, &framed, &run)) break;
  }
  return run;
}

Run FeedAll(std::string_view input) {
  ReplyFramer framer;
  Run run;
  size_t framed = 0;
  Check(framer.Feed(input.data(), input.size()));
  Drain(framer, input.size(), &framed, &run);
  return run;
}

// A frame's bytes, alone, must be exactly that frame.
void CheckReframes(std::string_view bytes, const Frame& expected) {
  ReplyFramer framer;
  Check(framer.Feed(bytes.data(), bytes.size()));
  Frame frame;
  Check(framer.Next(&frame.frame) == FrameStatus::kFrame);
  frame.error = std::string(frame.frame.error);
  Check(SameFrame(frame, expected));
  Check(framer.buffered() == 0);
  Check(framer.Next(&frame.frame) == FrameStatus::kNeedMore);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const Run chunked = FeedInChunks(input);
  const Run whole = FeedAll(input);
  Check(chunked.frames.size() == whole.frames.size());
  size_t offset = 0;
  for (size_t i = 0; i < chunked.frames.size(); ++i) {
    Check(SameFrame(chunked.frames[i], whole.frames[i]));
    CheckReframes(input.substr(offset, chunked.frames[i].frame.length), chunked.frames[i]);
    offset += chunked.frames[i].frame.length;
  }
  Check(chunked.failed == whole.failed);
  return 0;
}
