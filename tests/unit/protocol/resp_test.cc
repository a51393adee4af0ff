#include "protocol/resp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "protocol/request_parser.h"
#include "protocol/strings.h"

namespace slotpilot::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

RespValue Status(std::string text) { return {ReplyType::kStatus, std::move(text), 0, {}}; }
RespValue Error(std::string text) { return {ReplyType::kError, std::move(text), 0, {}}; }
RespValue Integer(int64_t value) { return {ReplyType::kInteger, "", value, {}}; }
RespValue Bulk(std::string value) { return {ReplyType::kBulk, std::move(value), 0, {}}; }
RespValue Nil() { return {}; }
RespValue Array(std::vector<RespValue> elements) {
  return {ReplyType::kArray, "", 0, std::move(elements)};
}

bool Same(const RespValue& a, const RespValue& b) {
  if (a.type != b.type || a.str != b.str || a.integer != b.integer) return false;
  if (a.elements.size() != b.elements.size()) return false;
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!Same(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

std::string Encode(const RespValue& value) {
  std::string out;
  AppendValue(&out, value);
  return out;
}

// Encodes, decodes through hiredis and compares, including the consumed length.
void ExpectRoundTrip(const RespValue& value) {
  const std::string bytes = Encode(value);
  size_t consumed = 0;
  const absl::StatusOr<RespValue> decoded = DecodeReply(bytes + "+trailing\r\n", &consumed);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(Same(*decoded, value)) << DebugString(*decoded) << " vs " << DebugString(value);
  EXPECT_EQ(consumed, bytes.size());
}

TEST(InfoField, FindsWholeKeysOnly) {
  const std::string_view info = "# Memory\r\nused_memory:1024\r\nused_memory_peak:2048\r\n"
                                "maxmemory_policy:noeviction\r\nempty:\r\nlast:7";
  EXPECT_EQ(slotpilot::InfoField(info, "used_memory"), "1024");
  EXPECT_EQ(slotpilot::InfoField(info, "used_memory_peak"), "2048");
  EXPECT_EQ(slotpilot::InfoField(info, "maxmemory_policy"), "noeviction");
  EXPECT_EQ(slotpilot::InfoField(info, "last"), "7");     // no trailing CRLF
  EXPECT_EQ(slotpilot::InfoField(info, "empty"), "");
  EXPECT_EQ(slotpilot::InfoField(info, "used"), "");      // a prefix is not a key
  EXPECT_EQ(slotpilot::InfoField(info, "Memory"), "");
  EXPECT_EQ(slotpilot::InfoField("", "x"), "");
}

TEST(RespEncode, Scalars) {
  std::string out;
  AppendStatus(&out, "OK");
  AppendError(&out, "ERR unknown command");
  AppendInteger(&out, -42);
  AppendBulk(&out, "foo");
  AppendBulk(&out, "");
  AppendNil(&out);
  AppendArrayHeader(&out, 2);
  AppendArrayHeader(&out, -1);
  EXPECT_EQ(out,
            "+OK\r\n-ERR unknown command\r\n:-42\r\n$3\r\nfoo\r\n$0\r\n\r\n$-1\r\n*2\r\n*-1\r\n");
}

TEST(RespEncode, IntegerExtremes) {
  std::string out;
  AppendInteger(&out, std::numeric_limits<int64_t>::min());
  AppendInteger(&out, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(out, ":-9223372036854775808\r\n:9223372036854775807\r\n");
}

TEST(RespEncode, ErrorAndStatusLinesCannotCarryCrOrLf) {
  std::string out;
  AppendError(&out, "ERR bad\r\nthing\n+OK");
  EXPECT_EQ(out, "-ERR bad  thing +OK\r\n");
  out.clear();
  AppendStatus(&out, "a\rb");
  EXPECT_EQ(out, "+a b\r\n");
}

TEST(RespEncode, AppendsToWhatIsAlreadyThere) {
  std::string out = "prefix";
  AppendBulk(&out, "x");
  EXPECT_EQ(out, "prefix$1\r\nx\r\n");
}

TEST(RespEncode, CommandIsAcceptedByTheRequestParser) {
  const std::string binary("\0\r\n*1\r\n$", 8);
  const std::vector<std::string_view> args = {"SET", "key", binary, ""};
  std::string out;
  AppendCommand(&out, args);
  EXPECT_EQ(out.substr(0, 22), "*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n");
  RequestParser parser;
  const ParseResult result = parser.Parse(out);
  ASSERT_EQ(result.status, ParseStatus::kComplete);
  EXPECT_EQ(result.consumed, out.size());
  ASSERT_EQ(parser.args().size(), 4u);
  EXPECT_EQ(parser.Arg(out, 0), "SET");
  EXPECT_EQ(parser.Arg(out, 1), "key");
  EXPECT_EQ(parser.Arg(out, 2), binary);
  EXPECT_EQ(parser.Arg(out, 3), "");
}

TEST(RespEncode, EmptyCommand) {
  std::string out;
  AppendCommand(&out, {});
  EXPECT_EQ(out, "*0\r\n");
}

TEST(RespRoundTrip, Scalars) {
  ExpectRoundTrip(Status("OK"));
  ExpectRoundTrip(Error("MOVED 3999 127.0.0.1:7002"));
  ExpectRoundTrip(Integer(0));
  ExpectRoundTrip(Integer(std::numeric_limits<int64_t>::min()));
  ExpectRoundTrip(Integer(std::numeric_limits<int64_t>::max()));
  ExpectRoundTrip(Nil());
  ExpectRoundTrip(Bulk(""));
  ExpectRoundTrip(Bulk(std::string("bin\0ary\r\n$-1\r\n", 14)));
  ExpectRoundTrip(Bulk(std::string(100000, 'b')));
}

TEST(RespRoundTrip, NestedArrays) {
  ExpectRoundTrip(Array({}));
  ExpectRoundTrip(Array({Bulk("a"), Nil(), Integer(7), Array({}), Status("QUEUED")}));
  // The shape of CLUSTER SLOTS: [[start, end, [host, port, id], ...], ...].
  const RespValue node = Array({Bulk("127.0.0.1"), Integer(7000), Bulk(std::string(40, 'f'))});
  ExpectRoundTrip(Array({Array({Integer(0), Integer(5460), node, node}),
                         Array({Integer(5461), Integer(10922), node})}));
  ExpectRoundTrip(Array({Array({Array({Array({Bulk("deep"), Error("ERR x")})})})}));
}

TEST(RespDecode, NilArrayIsNil) {
  const absl::StatusOr<RespValue> decoded = DecodeReply("*-1\r\n");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->type, ReplyType::kNil);
}

TEST(RespDecode, ConsumedWhenTheFirstReplyIsLong) {
  // hiredis drops consumed bytes from its buffer past 1 KiB; the count must still be right.
  const std::string first = Encode(Bulk(std::string(5000, 'x')));
  size_t consumed = 0;
  const absl::StatusOr<RespValue> decoded = DecodeReply(first + ":1\r\n", &consumed);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(consumed, first.size());
  EXPECT_EQ(decoded->str.size(), 5000u);
}

TEST(RespDecode, IncompleteInputIsOutOfRange) {
  for (std::string_view bytes : {"", "+OK", "+OK\r", "$5\r\nab", "*2\r\n:1\r\n", "$3\r\nfoo\r"}) {
    const absl::StatusOr<RespValue> decoded = DecodeReply(bytes);
    ASSERT_FALSE(decoded.ok()) << bytes;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kOutOfRange) << bytes;
    EXPECT_THAT(decoded.status().message(), HasSubstr("incomplete reply"));
  }
}

TEST(RespDecode, MalformedInputIsInvalidArgument) {
  const absl::StatusOr<RespValue> decoded = DecodeReply("?what\r\n");
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("malformed reply"));
}

TEST(RespDebugString, OneReadableLine) {
  const RespValue value = Array({Status("OK"), Error("ERR no"), Integer(-3),
                                 Bulk(std::string("a\n\0", 3)), Nil(), Array({})});
  EXPECT_EQ(DebugString(value), R"([+OK, -ERR no, :-3, "a\n\000", nil, []])");
}

}  // namespace
}  // namespace slotpilot::protocol
