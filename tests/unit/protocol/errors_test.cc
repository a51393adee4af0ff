#include "protocol/errors.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace slotpilot::protocol {
namespace {

using namespace std::string_view_literals;

TEST(ErrorsClassify, EveryKindFromRealReplies) {
  EXPECT_EQ(ClassifyError("MOVED 3999 127.0.0.1:6381"), ErrorKind::kMoved);
  EXPECT_EQ(ClassifyError("ASK 3999 127.0.0.1:6381"), ErrorKind::kAsk);
  EXPECT_EQ(ClassifyError("TRYAGAIN Multiple keys request during rehashing of slot"),
            ErrorKind::kTryAgain);
  EXPECT_EQ(ClassifyError("CLUSTERDOWN Hash slot not served"), ErrorKind::kClusterDown);
  EXPECT_EQ(ClassifyError("CLUSTERDOWN The cluster is down"), ErrorKind::kClusterDown);
  EXPECT_EQ(ClassifyError("LOADING Redis is loading the dataset in memory"), ErrorKind::kLoading);
  EXPECT_EQ(ClassifyError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is "
                          "set to 'no'."),
            ErrorKind::kMasterDown);
  EXPECT_EQ(ClassifyError("READONLY You can't write against a read only replica."),
            ErrorKind::kReadOnly);
  EXPECT_EQ(ClassifyError("CROSSSLOT Keys in request don't hash to the same slot"),
            ErrorKind::kCrossSlot);
  EXPECT_EQ(ClassifyError("BUSYKEY Target key name already exists."), ErrorKind::kBusyKey);
  EXPECT_EQ(ClassifyError("NOPROTO unsupported protocol version"), ErrorKind::kNoProto);
}

TEST(ErrorsClassify, BareWordWithoutMessage) {
  EXPECT_EQ(ClassifyError("TRYAGAIN"), ErrorKind::kTryAgain);
  EXPECT_EQ(ClassifyError("LOADING"), ErrorKind::kLoading);
}

TEST(ErrorsClassify, OtherErrors) {
  EXPECT_EQ(ClassifyError(""), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("ERR unknown command 'FOO'"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("WRONGTYPE Operation against a key holding the wrong kind of value"),
            ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("OOM command not allowed"), ErrorKind::kOther);
}

TEST(ErrorsClassify, FirstWordMustMatchExactly) {
  EXPECT_EQ(ClassifyError("moved 3999 127.0.0.1:6381"), ErrorKind::kOther);  // case-sensitive
  EXPECT_EQ(ClassifyError("MOVEDX 3999 127.0.0.1:6381"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("ASKING"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("MOVE 1 2"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError(" MOVED 3999 127.0.0.1:6381"), ErrorKind::kOther);
  EXPECT_EQ(ClassifyError("ERR MOVED"), ErrorKind::kOther);
}

// Parses `text` and checks that the host is a view into it (no copy, no allocation).
Redirect ParseOk(std::string_view text) {
  absl::StatusOr<Redirect> r = ParseRedirect(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status();
  if (!r.ok()) return {};
  if (!r->host.empty()) {
    EXPECT_GE(r->host.data(), text.data());
    EXPECT_LE(r->host.data() + r->host.size(), text.data() + text.size());
  }
  return *r;
}

TEST(ErrorsRedirect, MovedIpv4) {
  Redirect r = ParseOk("MOVED 3999 127.0.0.1:6381");
  EXPECT_EQ(r.kind, ErrorKind::kMoved);
  EXPECT_EQ(r.slot, 3999);
  EXPECT_EQ(r.host, "127.0.0.1");
  EXPECT_EQ(r.port, 6381);
  EXPECT_FALSE(r.endpoint_is_same_host());
  EXPECT_FALSE(r.endpoint_unknown());
}

TEST(ErrorsRedirect, AskIpv4) {
  Redirect r = ParseOk("ASK 0 10.1.2.3:7000");
  EXPECT_EQ(r.kind, ErrorKind::kAsk);
  EXPECT_EQ(r.slot, 0);
  EXPECT_EQ(r.host, "10.1.2.3");
  EXPECT_EQ(r.port, 7000);
}

TEST(ErrorsRedirect, Ipv6AsRedisSendsItWithoutBrackets) {
  Redirect r = ParseOk("MOVED 3999 ::1:7000");
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.port, 7000);
  r = ParseOk("ASK 16383 fe80::1:2:3:4:6379");
  EXPECT_EQ(r.slot, 16383);
  EXPECT_EQ(r.host, "fe80::1:2:3:4");
  EXPECT_EQ(r.port, 6379);
}

TEST(ErrorsRedirect, BracketedIpv6) {
  Redirect r = ParseOk("ASK 3999 [::1]:7000");
  EXPECT_EQ(r.kind, ErrorKind::kAsk);
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.port, 7000);
}

TEST(ErrorsRedirect, Hostname) {
  Redirect r = ParseOk("MOVED 3999 redis-0.redis.default.svc.cluster.local:7000");
  EXPECT_EQ(r.host, "redis-0.redis.default.svc.cluster.local");
  EXPECT_EQ(r.port, 7000);
}

TEST(ErrorsRedirect, EmptyEndpointMeansSameHost) {
  Redirect r = ParseOk("MOVED 3999 :7000");
  EXPECT_TRUE(r.endpoint_is_same_host());
  EXPECT_FALSE(r.endpoint_unknown());
  EXPECT_EQ(r.port, 7000);
}

TEST(ErrorsRedirect, QuestionMarkMeansUnknownEndpoint) {
  Redirect r = ParseOk("MOVED 3999 ?:7000");
  EXPECT_TRUE(r.endpoint_unknown());
  EXPECT_FALSE(r.endpoint_is_same_host());
  EXPECT_EQ(r.port, 7000);
}

TEST(ErrorsRedirect, PortBounds) {
  EXPECT_EQ(ParseOk("MOVED 1 h:1").port, 1);
  EXPECT_EQ(ParseOk("MOVED 1 h:65535").port, 65535);
}

TEST(ErrorsRedirect, RejectsGarbage) {
  constexpr std::string_view kBad[] = {
      "",
      "MOVED",
      "MOVED ",
      "MOVED 3999",
      "MOVED 3999 ",
      "MOVED  3999 127.0.0.1:6381",  // double space
      "MOVED 3999  127.0.0.1:6381",
      "MOVED x 127.0.0.1:6381",  // bad slot number
      "MOVED -1 127.0.0.1:6381",
      "MOVED +1 127.0.0.1:6381",
      "MOVED 16384 127.0.0.1:6381",  // slot out of range
      "MOVED 99999 127.0.0.1:6381",
      "MOVED 4294967296 127.0.0.1:6381",  // would wrap a 32-bit parse
      "MOVED 3999 127.0.0.1",             // no port
      "MOVED 3999 127.0.0.1:",
      "MOVED 3999 127.0.0.1:0",      // port 0
      "MOVED 3999 127.0.0.1:65536",  // port too big
      "MOVED 3999 127.0.0.1:123456",
      "MOVED 3999 127.0.0.1:6381 extra",  // trailing junk
      "MOVED 3999 127.0.0.1:6381 ",
      "MOVED 3999 127.0.0.1:6381\r\n",
      "MOVED 3999 127.0.0.1:63a1",
      "MOVED 3999 [::1:7000",  // unbalanced brackets
      "MOVED 3999 ::1]:7000",
      "MOVED 3999 []:7000",
      "MOVED 3999 [[::1]]:7000",
      "ASK",
      "ASK 3999 :",
      "TRYAGAIN Multiple keys request during rehashing of slot",
      "ERR 3999 127.0.0.1:6381",
      "moved 3999 127.0.0.1:6381",
  };
  for (std::string_view text : kBad) {
    absl::StatusOr<Redirect> r = ParseRedirect(text);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "accepted: " << text;
  }
}

TEST(ErrorsRedirect, RejectsEmbeddedNul) {
  EXPECT_FALSE(ParseRedirect("MOVED 3999 127.0.0.1\0:6381"sv).ok());
  EXPECT_FALSE(ParseRedirect("MOVED 39\0 127.0.0.1:6381"sv).ok());
}

TEST(ErrorsRedirect, ErrorMessageShowsTheText) {
  absl::Status status = ParseRedirect("MOVED 70000 h:1").status();
  EXPECT_NE(status.message().find("MOVED 70000 h:1"), std::string_view::npos) << status;
}

}  // namespace
}  // namespace slotpilot::protocol
