#include "protocol/reply_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace slotpilot::protocol {
namespace {

using namespace std::string_literals;

// A frame with its error text copied, so frames from different framers compare.
struct Frame {
  ReplyType type = ReplyType::kNil;
  size_t length = 0;
  int64_t elements = 0;
  std::string error;
  bool operator==(const Frame&) const = default;
};

struct Outcome {
  std::vector<Frame> frames;
  bool failed = false;
  std::string error;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Frame& f) {
  return os << "{type=" << static_cast<int>(f.type) << " length=" << f.length
            << " elements=" << f.elements << " error=\"" << f.error << "\"}";
}

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  os << "frames:";
  for (const Frame& f : o.frames) os << " " << f;
  return os << (o.failed ? " failed: " + o.error : std::string(" ok"));
}

// Extracts every complete frame; false once the framer reports an error.
bool Drain(ReplyFramer& framer, Outcome* out) {
  ReplyFrame frame;
  for (;;) {
    switch (framer.Next(&frame)) {
      case FrameStatus::kFrame:
        out->frames.push_back({frame.type, frame.length, frame.elements, std::string(frame.error)});
        break;
      case FrameStatus::kNeedMore:
        return true;
      case FrameStatus::kError:
        out->failed = true;
        out->error = std::string(framer.error());
        return false;
    }
  }
}

// Feeds `pieces` one after another, draining after each.
Outcome FeedPieces(ReplyFramer& framer, const std::vector<std::string_view>& pieces) {
  Outcome out;
  for (std::string_view piece : pieces) {
    if (!framer.Feed(piece.data(), piece.size())) {
      out.failed = true;
      out.error = std::string(framer.error());
      return out;
    }
    if (!Drain(framer, &out)) return out;
  }
  return out;
}

Outcome FeedAll(std::string_view input) {
  ReplyFramer framer;
  return FeedPieces(framer, {input});
}

Outcome FeedSplitAt(std::string_view input, size_t k) {
  ReplyFramer framer;
  return FeedPieces(framer, {input.substr(0, k), input.substr(k)});
}

Outcome FeedInChunks(std::string_view input, size_t chunk) {
  std::vector<std::string_view> pieces;
  for (size_t at = 0; at < input.size(); at += chunk) pieces.push_back(input.substr(at, chunk));
  ReplyFramer framer;
  return FeedPieces(framer, pieces);
}

Frame Only(const std::string& input) {
  const Outcome out = FeedAll(input);
  EXPECT_FALSE(out.failed) << out.error;
  EXPECT_EQ(out.frames.size(), 1u) << out;
  return out.frames.empty() ? Frame{} : out.frames[0];
}

std::string Bulk(std::string_view payload) {
  return "$" + std::to_string(payload.size()) + "\r\n" + std::string(payload) + "\r\n";
}

// `arrays` nested one-element arrays around ":1": the deepest array sits at depth arrays-1.
std::string Nested(int arrays) {
  std::string out;
  for (int i = 0; i < arrays; ++i) out += "*1\r\n";
  return out + ":1\r\n";
}

std::string NodeEntry(std::string_view ip, int port, char id_char) {
  return "*3\r\n" + Bulk(ip) + ":" + std::to_string(port) + "\r\n" + Bulk(std::string(40, id_char));
}

// CLUSTER SLOTS with two ranges, each with a master and a replica: depth 3.
std::string ClusterSlotsReply() {
  return "*2\r\n"s +                                                  //
         "*4\r\n:0\r\n:8191\r\n" + NodeEntry("127.0.0.1", 7000, 'a') +  //
         NodeEntry("127.0.0.1", 7003, 'b') +                          //
         "*4\r\n:8192\r\n:16383\r\n" + NodeEntry("127.0.0.1", 7001, 'c') +
         NodeEntry("127.0.0.1", 7004, 'd');
}

// MULTI; SET; LRANGE; INCR on a string; HGETALL → EXEC.
std::string ExecReply() {
  return "*4\r\n+OK\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
         "-ERR value is not an integer or out of range\r\n*0\r\n"s;
}

std::string BinaryBulk() { return Bulk("a\r\nb\0c\r\n\r\n$3\r\n"s); }

std::vector<std::string> ValidReplies() {
  return {"+OK\r\n",
          "-ERR unknown command 'FOO'\r\n",
          "-MOVED 3999 127.0.0.1:6381\r\n",
          ":123\r\n",
          ":-42\r\n",
          "$3\r\nfoo\r\n",
          "$0\r\n\r\n",
          "$-1\r\n",
          "*-1\r\n",
          "*0\r\n",
          ClusterSlotsReply(),
          ExecReply(),
          BinaryBulk(),
          Nested(8)};
}

std::vector<std::string> BadReplies() {
  return {"?foo\r\n", "%1\r\n+a\r\n+b\r\n", "_\r\n", ",1.5\r\n", "#t\r\n", "~1\r\n:1\r\n",
          ">2\r\n+a\r\n+b\r\n", "$abc\r\n", "$-2\r\n", "*abc\r\n", ":12a\r\n", "$3\r\nfooXY",
          Nested(9), "*2\r\n:1\r\n!oops\r\n"};
}

// Every valid reply back to back, twice, with padding replies so the stream is longer than the
// 1 KiB at which hiredis trims its buffer.
std::string Pipeline() {
  std::string out;
  for (int round = 0; round < 2; ++round) {
    for (const std::string& reply : ValidReplies()) out += reply;
    out += Bulk(std::string(700, 'x'));
  }
  return out;
}

TEST(ReplyFramerTest, Status) {
  EXPECT_EQ(Only("+OK\r\n"), (Frame{ReplyType::kStatus, 5, 0, ""}));
}

TEST(ReplyFramerTest, ErrorTextIsExact) {
  EXPECT_EQ(Only("-ERR unknown command 'FOO'\r\n"),
            (Frame{ReplyType::kError, 28, 0, "ERR unknown command 'FOO'"}));
  EXPECT_EQ(Only("-MOVED 3999 127.0.0.1:6381\r\n"),
            (Frame{ReplyType::kError, 28, 0, "MOVED 3999 127.0.0.1:6381"}));
  EXPECT_EQ(Only("-\r\n"), (Frame{ReplyType::kError, 3, 0, ""}));
}

TEST(ReplyFramerTest, Integers) {
  EXPECT_EQ(Only(":123\r\n"), (Frame{ReplyType::kInteger, 6, 0, ""}));
  EXPECT_EQ(Only(":-42\r\n"), (Frame{ReplyType::kInteger, 6, 0, ""}));
}

TEST(ReplyFramerTest, Bulks) {
  EXPECT_EQ(Only("$3\r\nfoo\r\n"), (Frame{ReplyType::kBulk, 9, 0, ""}));
  EXPECT_EQ(Only("$0\r\n\r\n"), (Frame{ReplyType::kBulk, 6, 0, ""}));
  EXPECT_EQ(Only("$-1\r\n"), (Frame{ReplyType::kNil, 5, 0, ""}));
}

TEST(ReplyFramerTest, BinaryBulkWithCrlfAndNul) {
  const std::string reply = BinaryBulk();
  EXPECT_EQ(Only(reply), (Frame{ReplyType::kBulk, reply.size(), 0, ""}));
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte += static_cast<char>(c);
  EXPECT_EQ(Only(Bulk(every_byte)), (Frame{ReplyType::kBulk, every_byte.size() + 8, 0, ""}));
}

TEST(ReplyFramerTest, Arrays) {
  // A nil array is an array with -1 elements, as the header documents.
  EXPECT_EQ(Only("*-1\r\n"), (Frame{ReplyType::kArray, 5, -1, ""}));
  EXPECT_EQ(Only("*0\r\n"), (Frame{ReplyType::kArray, 4, 0, ""}));
  EXPECT_EQ(Only("*2\r\n$1\r\na\r\n:1\r\n"), (Frame{ReplyType::kArray, 15, 2, ""}));
}

TEST(ReplyFramerTest, ClusterSlotsDepthThree) {
  const std::string reply = ClusterSlotsReply();
  EXPECT_EQ(Only(reply), (Frame{ReplyType::kArray, reply.size(), 2, ""}));
}

TEST(ReplyFramerTest, ExecWithNestedArraysAndErrorIsOneArray) {
  const std::string reply = ExecReply();
  EXPECT_EQ(Only(reply), (Frame{ReplyType::kArray, reply.size(), 4, ""}));
}

TEST(ReplyFramerTest, DeepestArrayAtDepthSevenFrames) {
  for (int arrays = 1; arrays <= 8; ++arrays) {
    const std::string reply = Nested(arrays);
    EXPECT_EQ(Only(reply), (Frame{ReplyType::kArray, reply.size(), 1, ""})) << arrays;
  }
}

TEST(ReplyFramerTest, ArrayAtDepthEightIsAnError) {
  for (int arrays : {9, 10, 100}) {
    const Outcome out = FeedAll(Nested(arrays));
    EXPECT_TRUE(out.failed);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_NE(out.error.find("depth > 7"), std::string::npos) << out.error;
  }
}

TEST(ReplyFramerTest, PipelinedFramesSumToInput) {
  const std::string input = Pipeline();
  const Outcome out = FeedAll(input);
  ASSERT_FALSE(out.failed) << out.error;
  ASSERT_EQ(out.frames.size(), 2 * (ValidReplies().size() + 1));
  size_t total = 0;
  for (const Frame& frame : out.frames) total += frame.length;
  EXPECT_EQ(total, input.size());
  const std::vector<std::string> replies = ValidReplies();
  for (size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(out.frames[i].length, replies[i].size()) << i;
    EXPECT_EQ(out.frames[i], out.frames[i + replies.size() + 1]) << i;
  }
}

TEST(ReplyFramerTest, EverySplitPointMatchesWholeFeed) {
  std::vector<std::string> inputs = ValidReplies();
  for (const std::string& bad : BadReplies()) inputs.push_back("+OK\r\n" + bad);
  inputs.push_back(Pipeline());
  for (const std::string& input : inputs) {
    const Outcome whole = FeedAll(input);
    for (size_t k = 0; k <= input.size(); ++k) {
      ASSERT_EQ(FeedSplitAt(input, k), whole) << "split at " << k << " of " << input;
    }
  }
}

TEST(ReplyFramerTest, OneByteAtATimeMatchesWholeFeed) {
  std::vector<std::string> inputs = ValidReplies();
  for (const std::string& bad : BadReplies()) inputs.push_back(bad);
  inputs.push_back(Pipeline());
  for (const std::string& input : inputs) {
    for (size_t chunk : {1, 2, 3, 7, 64}) {
      ASSERT_EQ(FeedInChunks(input, chunk), FeedAll(input)) << "chunk " << chunk << ": " << input;
    }
  }
}

// Feeds `payload_bytes` of bulk in 64 KiB chunks followed by "+OK": one bulk frame, then one
// status frame; nothing is framed early.
void ExpectBigBulkFrames(ReplyFramer& framer, size_t payload_bytes) {
  const std::string input = Bulk(std::string(payload_bytes, 'v')) + "+OK\r\n";
  constexpr size_t kChunk = 64 * 1024;
  ReplyFrame frame;
  std::vector<size_t> lengths;
  for (size_t at = 0; at < input.size(); at += kChunk) {
    const size_t n = std::min(kChunk, input.size() - at);
    ASSERT_TRUE(framer.Feed(input.data() + at, n));
    FrameStatus status;
    while ((status = framer.Next(&frame)) == FrameStatus::kFrame) lengths.push_back(frame.length);
    ASSERT_EQ(status, FrameStatus::kNeedMore);
    if (at + n < input.size() - 5) {
      ASSERT_TRUE(lengths.empty()) << at;
      ASSERT_EQ(framer.buffered(), at + n);
    }
  }
  EXPECT_EQ(lengths, (std::vector<size_t>{input.size() - 5, 5}));
  EXPECT_EQ(framer.buffered(), 0u);
}

TEST(ReplyFramerTest, OneMebibyteBulkIn64KiBChunks) {
  ReplyFramer framer;
  ExpectBigBulkFrames(framer, 1u << 20);
  ExpectBigBulkFrames(framer, 1u << 20);  // again, into the retained buffer
}

TEST(ReplyFramerTest, EightMebibyteBulkIn64KiBChunks) {
  ReplyFramer framer;
  ExpectBigBulkFrames(framer, 8u << 20);
  ExpectBigBulkFrames(framer, 1u << 20);  // after the oversized buffer is released
}

TEST(ReplyFramerTest, NoRetainedBufferStillFrames) {
  ReplyFramer framer(/*retain_buffer_bytes=*/0);
  ExpectBigBulkFrames(framer, 1u << 20);
  ExpectBigBulkFrames(framer, 100);
}

// hiredis trims consumed bytes once its cursor passes 1 KiB, inside the call that frames the
// reply, by moving the unconsumed bytes to the front: the error text must survive that.
TEST(ReplyFramerTest, ErrorTextSurvivesBufferTrim) {
  std::string input;
  for (int i = 0; i < 204; ++i) input += "+OK\r\n";  // the error line then ends past 1 KiB
  input += "-MOVED 3999 127.0.0.1:6381\r\n" + Bulk(std::string(4000, 'x'));
  ReplyFramer framer;
  ASSERT_TRUE(framer.Feed(input.data(), input.size()));
  ReplyFrame frame;
  for (int i = 0; i < 204; ++i) ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.type, ReplyType::kError);
  EXPECT_EQ(frame.error, "MOVED 3999 127.0.0.1:6381");
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.length, 4000u + 9);  // "$4000\r\n" + payload + "\r\n"
}

TEST(ReplyFramerTest, GarbageIsACleanError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"?foo\r\n", "Protocol error, got \"?\" as reply type byte"},
      {"%1\r\n", "Protocol error, got \"%\" as reply type byte"},
      {"_\r\n", "Protocol error, got \"_\" as reply type byte"},
      {",1.5\r\n", "Protocol error, got \",\" as reply type byte"},
      {"#t\r\n", "Protocol error, got \"#\" as reply type byte"},
      {"$abc\r\n", "Bad bulk string length"},
      {"$-2\r\n", "Bulk string length out of range"},
      {"*abc\r\n", "Bad multi-bulk length"},
      {"*3000000000\r\n", "Multi-bulk length out of range"},
      {":12a\r\n", "Bad integer value"},
      {"$3\r\nfooXY", "Bulk string not terminated by CRLF"},
      {"*1\r\n$1\r\nab\r\n", "Bulk string not terminated by CRLF"},
  };
  for (const auto& [input, error] : cases) {
    const Outcome out = FeedAll(input);
    EXPECT_TRUE(out.failed) << input;
    EXPECT_TRUE(out.frames.empty()) << input;
    EXPECT_EQ(out.error, error) << input;
  }
}

TEST(ReplyFramerTest, ErrorIsStickyUntilReset) {
  ReplyFramer framer;
  const std::string input = "+OK\r\n?oops\r\n";
  ASSERT_TRUE(framer.Feed(input.data(), input.size()));
  ReplyFrame frame;
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(framer.Next(&frame), FrameStatus::kError);
  EXPECT_FALSE(framer.error().empty());
  EXPECT_FALSE(framer.Feed("+OK\r\n", 5));
  EXPECT_EQ(framer.Next(&frame), FrameStatus::kError);

  framer.Reset();
  EXPECT_TRUE(framer.error().empty());
  EXPECT_EQ(framer.buffered(), 0u);
  ASSERT_TRUE(framer.Feed("+OK\r\n", 5));
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.length, 5u);
  EXPECT_EQ(framer.Next(&frame), FrameStatus::kNeedMore);
}

TEST(ReplyFramerTest, ResetDropsAPartialReply) {
  ReplyFramer framer;
  ASSERT_TRUE(framer.Feed("*2\r\n$10\r\nabc", 13));
  ReplyFrame frame;
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kNeedMore);
  framer.Reset();
  ASSERT_TRUE(framer.Feed(":1\r\n", 4));
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.type, ReplyType::kInteger);
  EXPECT_EQ(frame.length, 4u);
}

TEST(ReplyFramerTest, BufferedCountsBytesNotYetFramed) {
  ReplyFramer framer;
  ReplyFrame frame;
  EXPECT_EQ(framer.buffered(), 0u);
  ASSERT_TRUE(framer.Feed("+OK\r\n:1", 7));
  EXPECT_EQ(framer.buffered(), 7u);
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(framer.buffered(), 2u);
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kNeedMore);
  EXPECT_EQ(framer.buffered(), 2u);
  ASSERT_TRUE(framer.Feed("\r\n*2\r\n:1\r\n", 10));
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.length, 4u);
  // hiredis has consumed the first element, but the array is not framed yet.
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kNeedMore);
  EXPECT_EQ(framer.buffered(), 8u);
  ASSERT_TRUE(framer.Feed(":2\r\n", 4));
  ASSERT_EQ(framer.Next(&frame), FrameStatus::kFrame);
  EXPECT_EQ(frame.length, 12u);
  EXPECT_EQ(framer.buffered(), 0u);
  ASSERT_TRUE(framer.Feed("", 0));
  EXPECT_EQ(framer.Next(&frame), FrameStatus::kNeedMore);
}

}  // namespace
}  // namespace slotpilot::protocol
