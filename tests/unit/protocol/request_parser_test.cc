#include "protocol/request_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <climits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "protocol/resp.h"

namespace slotpilot::protocol {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Args = std::vector<std::string>;

std::string Escaped(std::string_view s) {
  return absl::CEscape(absl::string_view(s.data(), s.size()));
}

// The arguments of the last complete request, copied out.
Args ArgsOf(const RequestParser& parser, std::string_view data) {
  Args args;
  for (size_t i = 0; i < parser.args().size(); ++i) args.emplace_back(parser.Arg(data, i));
  return args;
}

std::string Command(const std::vector<std::string_view>& args) {
  std::string out;
  AppendCommand(&out, args);
  return out;
}

// Parses `data` once with a fresh parser.
struct OneShot {
  ParseResult result;
  Args args;
  std::string error;  // copied: the view may point into the parser
};

OneShot ParseOnce(std::string_view data, RequestLimits limits = {}) {
  RequestParser parser(limits);
  OneShot out;
  out.result = parser.Parse(data);
  if (out.result.status == ParseStatus::kComplete) out.args = ArgsOf(parser, data);
  out.error = std::string(out.result.error);
  return out;
}

// Each request split in two and in three at every pair of byte boundaries, fed the way a client
// session does (same parser, the prefix copied to a fresh buffer each time since the caller's
// buffer may move): every proper prefix is kNeedMore, the whole request gives `want`.
void ExpectFramedAtEveryBoundary(std::string_view request, const Args& want,
                                 RequestLimits limits = {}) {
  const size_t n = request.size();
  for (size_t first = 0; first < n; ++first) {
    for (size_t second = first; second < n; ++second) {
      RequestParser parser(limits);
      for (size_t cut : {first, second}) {
        const std::string prefix(request.substr(0, cut));
        ASSERT_EQ(parser.Parse(prefix).status, ParseStatus::kNeedMore)
            << Escaped(request) << " cut at " << cut;
        ASSERT_LE(parser.pending_bytes(), cut);
      }
      const std::string whole(request);
      const ParseResult result = parser.Parse(whole);
      ASSERT_EQ(result.status, ParseStatus::kComplete) << Escaped(request) << " " << first;
      ASSERT_EQ(result.consumed, n);
      ASSERT_EQ(ArgsOf(parser, whole), want) << Escaped(request);
    }
  }
}

// A client session: `stream` arrives in chunks ending at `cuts` (ascending, then the end); after
// each chunk every complete request is framed and dropped from the buffer, as ClientSession will.
struct Session {
  std::vector<Args> requests;
  std::string error;
  size_t leftover = 0;
};

Session FrameStream(std::string_view stream, std::vector<size_t> cuts, RequestLimits limits = {}) {
  RequestParser parser(limits);
  Session session;
  std::string buffer;
  size_t fed = 0;
  cuts.push_back(stream.size());
  for (size_t cut : cuts) {
    buffer.append(stream.substr(fed, cut - fed));
    fed = cut;
    for (;;) {
      const ParseResult result = parser.Parse(buffer);
      if (result.status == ParseStatus::kNeedMore) break;
      if (result.status == ParseStatus::kError) {
        session.error = std::string(result.error);
        return session;
      }
      session.requests.push_back(ArgsOf(parser, buffer));
      buffer.erase(0, result.consumed);
    }
  }
  session.leftover = buffer.size();
  return session;
}

// Parsed at once, and fed in two pieces split at every byte: always the same error.
void ExpectError(std::string_view data, std::string_view error, RequestLimits limits = {}) {
  const OneShot got = ParseOnce(data, limits);
  EXPECT_EQ(got.result.status, ParseStatus::kError) << Escaped(data);
  EXPECT_EQ(got.error, error) << Escaped(data);
  for (size_t cut = 0; cut < data.size(); ++cut) {
    const Session split = FrameStream(data, {cut}, limits);
    ASSERT_EQ(split.error, error) << Escaped(data) << " cut at " << cut;
    ASSERT_TRUE(split.requests.empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Multibulk

TEST(RequestParserMultibulk, FramesOneCommand) {
  const std::string request = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
  RequestParser parser;
  const ParseResult result = parser.Parse(request);
  ASSERT_EQ(result.status, ParseStatus::kComplete);
  EXPECT_EQ(result.consumed, request.size());
  EXPECT_FALSE(parser.is_inline());
  ASSERT_EQ(parser.args().size(), 3u);
  // Offsets point into the caller's bytes, so the request can be forwarded untouched.
  EXPECT_EQ(parser.args()[0].offset, 8u);
  EXPECT_EQ(parser.args()[0].length, 3u);
  EXPECT_THAT(ArgsOf(parser, request), ElementsAre("SET", "key", "value"));
}

TEST(RequestParserMultibulk, IgnoresBytesAfterTheRequest) {
  const std::string data = "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI";
  const OneShot got = ParseOnce(data);
  ASSERT_EQ(got.result.status, ParseStatus::kComplete);
  EXPECT_EQ(got.result.consumed, 14u);
  EXPECT_THAT(got.args, ElementsAre("PING"));
}

TEST(RequestParserMultibulk, ZeroAndNegativeCountsCompleteWithoutArguments) {
  for (std::string_view request : {"*0\r\n", "*-1\r\n", "*-5\r\n", "*-9223372036854775808\r\n"}) {
    const OneShot got = ParseOnce(request);
    EXPECT_EQ(got.result.status, ParseStatus::kComplete) << request;
    EXPECT_EQ(got.result.consumed, request.size()) << request;
    EXPECT_THAT(got.args, IsEmpty()) << request;
  }
}

TEST(RequestParserMultibulk, EmptyAndBinaryArguments) {
  const std::string binary("a\r\nb\0c\r\n*1\r\n$1\r\n", 16);
  const std::string request = Command({"SET", "", binary});
  ExpectFramedAtEveryBoundary(request, {"SET", "", binary});
}

TEST(RequestParserMultibulk, LikeRedisDoesNotCheckTheByteAfterCrOrAfterAPayload) {
  // Redis only requires that two bytes follow; the proxy must frame exactly as the server does.
  const OneShot got = ParseOnce("*2\rX$3\r?GETzz$1\r\nkAB");
  ASSERT_EQ(got.result.status, ParseStatus::kComplete);
  EXPECT_EQ(got.result.consumed, 20u);
  EXPECT_THAT(got.args, ElementsAre("GET", "k"));
}

TEST(RequestParserMultibulk, SplitAtEveryBoundary) {
  ExpectFramedAtEveryBoundary("*1\r\n$4\r\nPING\r\n", {"PING"});
  ExpectFramedAtEveryBoundary("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
                              {"SET", "key", "value"});
  ExpectFramedAtEveryBoundary("*0\r\n", {});
  ExpectFramedAtEveryBoundary("*-1\r\n", {});
  ExpectFramedAtEveryBoundary("*2\r\n$0\r\n\r\n$12\r\nhello world!\r\n", {"", "hello world!"});
  const std::string big(300, 'x');
  ExpectFramedAtEveryBoundary(Command({"SET", "k", big}), {"SET", "k", big});
}

TEST(RequestParserMultibulk, EachLineIsScannedFromItsOwnStart) {
  // A long header searched in pieces must not leak its scan position into the next line.
  const std::string request =
      "*3\r\n$100\r\n" + std::string(100, 'v') + "\r\n$0\r\n\r\n$1\r\nk\r\n";
  ExpectFramedAtEveryBoundary(request, {std::string(100, 'v'), "", "k"});
  ExpectError("*2\r\n$100\r\n" + std::string(100, 'v') + "\r\n$x\r\n",
              "Protocol error: invalid bulk length");
}

TEST(RequestParserMultibulk, PendingBulkRemainingTellsTheBufferSizeNeeded) {
  RequestParser parser;
  const std::string head = "*2\r\n$3\r\nGET\r\n$100\r\nabc";
  ASSERT_EQ(parser.Parse(head).status, ParseStatus::kNeedMore);
  EXPECT_EQ(parser.pending_bytes(), 19u);            // up to the payload's first byte
  EXPECT_EQ(parser.pending_bulk_remaining(), 102u);  // payload + CRLF
  const std::string whole = "*2\r\n$3\r\nGET\r\n$100\r\n" + std::string(100, 'v') + "\r\n";
  ASSERT_EQ(parser.Parse(whole).status, ParseStatus::kComplete);
  EXPECT_EQ(parser.pending_bulk_remaining(), 0u);
  EXPECT_EQ(parser.pending_bytes(), 0u);
}

TEST(RequestParserMultibulk, PendingBulkRemainingIsZeroOutsideAPayload) {
  RequestParser parser;
  EXPECT_EQ(parser.Parse("*2\r\n$3\r").status, ParseStatus::kNeedMore);
  EXPECT_EQ(parser.pending_bulk_remaining(), 0u);
  EXPECT_EQ(parser.pending_bytes(), 4u);
}

TEST(RequestParserMultibulk, BigPayloadFedInChunks) {
  const std::string value(1 << 20, 'z');
  const std::string request = Command({"SET", "k", value});
  RequestParser parser;
  std::string buffer;
  for (size_t fed = 0; fed < request.size();) {
    const size_t chunk = std::min<size_t>(16 * 1024 + 7, request.size() - fed);
    buffer.append(request, fed, chunk);
    fed += chunk;
    const ParseResult result = parser.Parse(buffer);
    ASSERT_EQ(result.status,
              fed == request.size() ? ParseStatus::kComplete : ParseStatus::kNeedMore);
  }
  ASSERT_EQ(parser.args().size(), 3u);
  EXPECT_EQ(parser.Arg(buffer, 2), value);
}

TEST(RequestParserMultibulk, AMillionArgumentHeaderDoesNotAllocateAMillionEntries) {
  const std::string data = "*1000000\r\n$1\r\na\r\n$1\r\nb\r\n$3\r\nfoo\r\n";
  RequestParser parser;
  const ParseResult result = parser.Parse(data);
  EXPECT_EQ(result.status, ParseStatus::kNeedMore);
  EXPECT_EQ(parser.args().size(), 3u);
  EXPECT_LE(parser.args().capacity(), 16u);
  EXPECT_EQ(parser.pending_bytes(), data.size());
}

// ---------------------------------------------------------------------------------------------
// Inline

TEST(RequestParserInline, SplitsOnBlanks) {
  const OneShot got = ParseOnce("  set  key\tvalue   \r\nGET");
  ASSERT_EQ(got.result.status, ParseStatus::kComplete);
  EXPECT_EQ(got.result.consumed, 21u);
  EXPECT_THAT(got.args, ElementsAre("set", "key", "value"));
}

TEST(RequestParserInline, BareNewlineAndStrayCarriageReturns) {
  const OneShot lf = ParseOnce("PING\n");
  EXPECT_EQ(lf.result.consumed, 5u);
  EXPECT_THAT(lf.args, ElementsAre("PING"));
  // A '\r' inside the line ends a word, as in sdssplitargs.
  EXPECT_THAT(ParseOnce("a\rb\r\n").args, ElementsAre("a", "b"));
  // \v and \f are skipped between words but do not end one.
  EXPECT_THAT(ParseOnce("\va\vb \f\n").args, ElementsAre("a\vb"));
}

TEST(RequestParserInline, BlankLinesCompleteWithoutArguments) {
  for (std::string_view line : {"\r\n", "\n", "   \r\n", " \t \n"}) {
    const OneShot got = ParseOnce(line);
    EXPECT_EQ(got.result.status, ParseStatus::kComplete) << Escaped(line);
    EXPECT_EQ(got.result.consumed, line.size());
    EXPECT_THAT(got.args, IsEmpty());
  }
}

TEST(RequestParserInline, ArgumentsLiveInInlineStorage) {
  RequestParser parser;
  const std::string data = "SET \"a b\" c\r\n";
  ASSERT_EQ(parser.Parse(data).status, ParseStatus::kComplete);
  EXPECT_TRUE(parser.is_inline());
  EXPECT_EQ(parser.inline_storage(), "SETa bc");
  ASSERT_EQ(parser.args().size(), 3u);
  EXPECT_EQ(parser.args()[1].offset, 3u);
  EXPECT_EQ(parser.args()[1].length, 3u);
  EXPECT_EQ(parser.Arg(data, 1), "a b");
}

TEST(RequestParserInline, DoubleQuotesAndEscapes) {
  EXPECT_THAT(ParseOnce(R"(SET "a b" "")"
                        "\r\n")
                  .args,
              ElementsAre("SET", "a b", ""));
  EXPECT_THAT(ParseOnce(R"("\x41\x6a\n\r\t\b\a\\\"\q")"
                        "\n")
                  .args,
              ElementsAre("Aj\n\r\t\b\a\\\"q"));
  // Not two hex digits: "\x" is a plain escaped 'x'.
  EXPECT_THAT(ParseOnce(R"("\x4" "\xg1")"
                        "\n")
                  .args,
              ElementsAre("x4", "xg1"));
  EXPECT_THAT(ParseOnce(R"("\x00")"
                        "\n")
                  .args,
              ElementsAre(std::string(1, '\0')));
  // A quote may open in the middle of a word; the closing quote ends it.
  EXPECT_THAT(ParseOnce(R"(foo"bar baz" x)"
                        "\n")
                  .args,
              ElementsAre("foobar baz", "x"));
  // Any blank may follow a closing quote, \v included.
  EXPECT_THAT(ParseOnce("\"a\"\vb\n").args, ElementsAre("a", "b"));
}

TEST(RequestParserInline, SingleQuotesOnlyUnescapeTheQuote) {
  EXPECT_THAT(ParseOnce(R"('it\'s' 'a\nb' '\\x41' '')"
                        "\n")
                  .args,
              ElementsAre("it's", R"(a\nb)", R"(\\x41)", ""));
}

TEST(RequestParserInline, ANulByteEndsTheLineAsInSdssplitargs) {
  const std::string data("GET a\0b c\r\nPING\r\n", 17);
  const OneShot got = ParseOnce(data);
  ASSERT_EQ(got.result.status, ParseStatus::kComplete);
  EXPECT_EQ(got.result.consumed, 11u);
  EXPECT_THAT(got.args, ElementsAre("GET", "a"));
  ExpectError(std::string("\"a\0\"\n", 5), "Protocol error: unbalanced quotes in request");
}

TEST(RequestParserInline, SplitAtEveryBoundary) {
  ExpectFramedAtEveryBoundary("PING\r\n", {"PING"});
  ExpectFramedAtEveryBoundary("PING\n", {"PING"});
  ExpectFramedAtEveryBoundary("\r\n", {});
  ExpectFramedAtEveryBoundary("set key value\r\n", {"set", "key", "value"});
  ExpectFramedAtEveryBoundary(R"(SET "k \"1\"" 'v\'2' "\x00\xff")"
                              "\r\n",
                              {"SET", "k \"1\"", "v'2", std::string("\0\xff", 2)});
}

// ---------------------------------------------------------------------------------------------
// Pipelines

TEST(RequestParserPipeline, SeveralRequestsInOneBuffer) {
  const std::string stream = Command({"SET", "a", "1"}) + "PING\r\n" + "*0\r\n" +
                             Command({"GET", "a"}) + "\r\n" + "ECHO \"x y\"\n" +
                             Command({"DEL", std::string("\0\r\n", 3)});
  const std::vector<Args> want = {{"SET", "a", "1"},
                                  {"PING"},
                                  {},
                                  {"GET", "a"},
                                  {},
                                  {"ECHO", "x y"},
                                  {"DEL", std::string("\0\r\n", 3)}};
  const Session whole = FrameStream(stream, {});
  EXPECT_EQ(whole.requests, want);
  EXPECT_EQ(whole.error, "");
  EXPECT_EQ(whole.leftover, 0u);
  // The same stream split at every pair of boundaries frames the same requests.
  for (size_t first = 0; first <= stream.size(); ++first) {
    for (size_t second = first; second <= stream.size(); ++second) {
      const Session split = FrameStream(stream, {first, second});
      ASSERT_EQ(split.requests, want) << first << " " << second;
      ASSERT_EQ(split.leftover, 0u);
    }
  }
}

TEST(RequestParserPipeline, ByteByByte) {
  const std::string stream =
      Command({"MSET", "a", "1", "b", "2"}) + "GET a\r\n" + Command({"GET", "b"});
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  const Session session = FrameStream(stream, cuts);
  EXPECT_EQ(session.requests,
            (std::vector<Args>{{"MSET", "a", "1", "b", "2"}, {"GET", "a"}, {"GET", "b"}}));
}

TEST(RequestParserPipeline, ErrorAfterGoodRequests) {
  const Session session = FrameStream("PING\r\n*1\r\n$4\r\nPING\r\n*1\r\n+4\r\n", {});
  EXPECT_EQ(session.requests, (std::vector<Args>{{"PING"}, {"PING"}}));
  EXPECT_EQ(session.error, "Protocol error: expected '$', got '+'");
}

// ---------------------------------------------------------------------------------------------
// Protocol errors, in Redis's exact words

TEST(RequestParserErrors, InvalidMultibulkLength) {
  constexpr std::string_view kError = "Protocol error: invalid multibulk length";
  for (std::string_view data : {"*x\r\n", "*\r\n", "*01\r\n", "*+1\r\n", "* 1\r\n", "*1 \r\n",
                                "*-0\r\n", "*-\r\n", "*1x\r\n", "*99999999999999999999\r\n",
                                "*-9223372036854775809\r\n", "*123456789012345678901\r\n"}) {
    ExpectError(data, kError);
  }
  ExpectError("*1048577\r\n", kError);  // default max_args + 1
  RequestLimits no_arg_limit;
  no_arg_limit.max_args = SIZE_MAX;
  ExpectError("*2147483648\r\n", kError, no_arg_limit);  // > INT_MAX, as in Redis
  EXPECT_EQ(ParseOnce("*2147483647\r\n", no_arg_limit).result.status, ParseStatus::kNeedMore);
}

TEST(RequestParserErrors, ExpectedDollar) {
  ExpectError("*1\r\nx\r\n", "Protocol error: expected '$', got 'x'");
  ExpectError("*2\r\n$1\r\na\r\n:1\r\n", "Protocol error: expected '$', got ':'");
  // CR and LF are shown as spaces, as Redis's error replies do.
  ExpectError("*1\r\n\r\n", "Protocol error: expected '$', got ' '");
  ExpectError("*1\r\n\n\r\n", "Protocol error: expected '$', got ' '");
}

TEST(RequestParserErrors, ExpectedDollarWaitsForTheWholeLineLikeRedis) {
  RequestParser parser;
  EXPECT_EQ(parser.Parse("*1\r\nGET").status, ParseStatus::kNeedMore);
  EXPECT_EQ(parser.Parse("*1\r\nGET\r").status, ParseStatus::kNeedMore);
  const ParseResult result = parser.Parse("*1\r\nGET\r\n");
  EXPECT_EQ(result.status, ParseStatus::kError);
  EXPECT_EQ(result.error, "Protocol error: expected '$', got 'G'");
}

TEST(RequestParserErrors, InvalidBulkLength) {
  constexpr std::string_view kError = "Protocol error: invalid bulk length";
  for (std::string_view data : {"*1\r\n$x\r\n", "*1\r\n$\r\n", "*1\r\n$-1\r\n", "*1\r\n$01\r\n",
                                "*1\r\n$-0\r\n", "*1\r\n$ 1\r\n", "*1\r\n$+1\r\n",
                                "*1\r\n$536870913\r\n", "*1\r\n$99999999999999999999\r\n"}) {
    ExpectError(data, kError);
  }
  EXPECT_EQ(ParseOnce("*1\r\n$536870912\r\n").result.status, ParseStatus::kNeedMore);
}

TEST(RequestParserErrors, TooBigCountStrings) {
  RequestLimits limits;
  limits.max_inline_bytes = 8;
  // A count line (prefix + digits, before '\r') may use max_inline_bytes bytes.
  EXPECT_EQ(ParseOnce("*0000000", limits).result.status, ParseStatus::kNeedMore);
  ExpectError("*00000000", "Protocol error: too big mbulk count string", limits);
  ExpectError("*1\r\n$00000000", "Protocol error: too big bulk count string", limits);
  EXPECT_EQ(ParseOnce("*1\r\n$0000000", limits).result.status, ParseStatus::kNeedMore);
  // Default limit: 64 KiB without a '\r'.
  ExpectError("*" + std::string(64 * 1024, '1'), "Protocol error: too big mbulk count string");
}

TEST(RequestParserErrors, TooBigInlineRequest) {
  ExpectError(std::string(64 * 1024 + 1, 'a'), "Protocol error: too big inline request");
  EXPECT_EQ(ParseOnce(std::string(64 * 1024, 'a')).result.status, ParseStatus::kNeedMore);
}

TEST(RequestParserErrors, UnbalancedQuotes) {
  constexpr std::string_view kError = "Protocol error: unbalanced quotes in request";
  for (std::string_view data : {"\"foo\r\n", "'foo\n", "\"foo\"bar\n", "'a'b\n", "a \"b\\\"\n",
                                "\"a\\\"\n", "'a\\'\n", "x \"\n"}) {
    ExpectError(data, kError);
  }
}

TEST(RequestParserErrors, TheNextCallStartsANewRequest) {
  RequestParser parser;
  EXPECT_EQ(parser.Parse("*1\r\n$x\r\n").status, ParseStatus::kError);
  EXPECT_EQ(parser.pending_bytes(), 0u);
  const std::string next = "*1\r\n$4\r\nPING\r\n";
  ASSERT_EQ(parser.Parse(next).status, ParseStatus::kComplete);
  EXPECT_THAT(ArgsOf(parser, next), ElementsAre("PING"));
}

// ---------------------------------------------------------------------------------------------
// Limits: exactly at the limit is accepted, one above is an error.

TEST(RequestParserLimits, MaxBulkBytes) {
  RequestLimits limits;
  limits.max_bulk_bytes = 10;
  const std::string ten(10, 'x');
  EXPECT_THAT(ParseOnce(Command({ten}), limits).args, ElementsAre(ten));
  ExpectError(Command({ten + "x"}), "Protocol error: invalid bulk length", limits);
}

TEST(RequestParserLimits, MaxArgs) {
  RequestLimits limits;
  limits.max_args = 3;
  EXPECT_THAT(ParseOnce(Command({"a", "b", "c"}), limits).args, ElementsAre("a", "b", "c"));
  ExpectError(Command({"a", "b", "c", "d"}), "Protocol error: invalid multibulk length", limits);
  EXPECT_THAT(ParseOnce("a b c\r\n", limits).args, ElementsAre("a", "b", "c"));
  ExpectError("a b c d\r\n", "Protocol error: too many arguments in request", limits);
}

TEST(RequestParserLimits, MaxInlineBytes) {
  RequestLimits limits;
  limits.max_inline_bytes = 16;
  // The line before '\n' (a '\r' included) may be 16 bytes.
  const std::string sixteen = "GET 012345678901";
  EXPECT_THAT(ParseOnce(sixteen + "\n", limits).args, ElementsAre("GET", "012345678901"));
  EXPECT_THAT(ParseOnce(sixteen.substr(1) + "\r\n", limits).args,
              ElementsAre("ET", "012345678901"));
  ExpectError(sixteen + "\r\n", "Protocol error: too big inline request", limits);
  ExpectError(sixteen + "2\n", "Protocol error: too big inline request", limits);
  // Multibulk payloads are not inline: only their count lines are bounded.
  const std::string value(100, 'v');
  EXPECT_THAT(ParseOnce(Command({"SET", value}), limits).args, ElementsAre("SET", value));
}

TEST(RequestParserLimits, LimitErrorsDoNotDependOnHowBytesArrive) {
  RequestLimits limits;
  limits.max_inline_bytes = 8;
  const std::string line = "123456789\n";  // 9 bytes before '\n'
  for (size_t cut = 0; cut <= line.size(); ++cut) {
    const Session session = FrameStream(line, {cut}, limits);
    EXPECT_EQ(session.error, "Protocol error: too big inline request") << cut;
  }
}

// ---------------------------------------------------------------------------------------------
// Memory

TEST(RequestParserMemory, SteadyStateReusesTheArgumentVector) {
  RequestParser parser;
  const std::string first = Command({"SET", "a", "1"});
  ASSERT_EQ(parser.Parse(first).status, ParseStatus::kComplete);
  const ArgRef* storage = parser.args().data();
  const size_t capacity = parser.args().capacity();
  for (int i = 0; i < 100; ++i) {
    const std::string next = Command({"SET", absl::StrCat("key", i), "value"});
    ASSERT_EQ(parser.Parse(next).status, ParseStatus::kComplete);
    ASSERT_EQ(parser.args().data(), storage);
    ASSERT_EQ(parser.args().capacity(), capacity);
  }
}

TEST(RequestParserMemory, AHugeRequestDoesNotPinItsVectorForever) {
  std::vector<std::string_view> many(100000, "x");
  const std::string huge = Command(many);
  RequestParser parser;
  ASSERT_EQ(parser.Parse(huge).status, ParseStatus::kComplete);
  EXPECT_EQ(parser.args().size(), many.size());
  ASSERT_EQ(parser.Parse("*1\r\n$4\r\nPING\r\n").status, ParseStatus::kComplete);
  EXPECT_LT(parser.args().capacity(), 1000u);
}

TEST(RequestParserReset, ForgetsAPartialRequest) {
  RequestParser parser;
  EXPECT_EQ(parser.Parse("*2\r\n$3\r\nGET\r\n$1").status, ParseStatus::kNeedMore);
  parser.Reset();
  EXPECT_EQ(parser.pending_bytes(), 0u);
  const std::string ping = "PING\r\n";
  ASSERT_EQ(parser.Parse(ping).status, ParseStatus::kComplete);
  EXPECT_THAT(ArgsOf(parser, ping), ElementsAre("PING"));
}

TEST(RequestParserReset, EmptyInputNeedsMore) {
  RequestParser parser;
  const ParseResult result = parser.Parse("");
  EXPECT_EQ(result.status, ParseStatus::kNeedMore);
  EXPECT_EQ(result.consumed, 0u);
}

}  // namespace
}  // namespace slotpilot::protocol
