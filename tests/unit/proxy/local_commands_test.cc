// Commands the proxy answers or refuses itself, compared with Redis's exact replies.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "proxy/local_commands.h"

#include "tests/unit/proxy/proxy_harness.h"

namespace slotpilot::testing {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

class LocalCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = StartFake();
    ASSERT_NE(node_, nullptr);
    node_->SetSlots({{0, 16383, *node_}});
  }

  void StartProxy(std::string client_password = "") {
    proxy::ProxyOptions o = FastOptions({node_.get()});
    o.worker.client_password = std::move(client_password);
    proxy_ = ProxyUnderTest::Start(o);
    ASSERT_NE(proxy_, nullptr);
    client_ = proxy_->Connect();
    ASSERT_NE(client_, nullptr);
  }

  // Commands the fake saw other than the control plane's (CLUSTER SLOTS, INFO, health PINGs).
  size_t DataPathCommands() const {
    return node_->CountIf([](const FakeCommand& c) {
      return !c.Is("CLUSTER", "SLOTS") && !c.Is("INFO") && !c.Is("PING");
    });
  }

  std::string DescribeLog() const {
    std::string out;
    for (const FakeCommand& c : node_->Commands()) {
      for (const std::string& a : c.argv) StrAppend(&out, a, " ");
      out += "| ";
    }
    return out;
  }

  std::unique_ptr<FakeRedisNode> node_;
  std::unique_ptr<ProxyUnderTest> proxy_;
  std::unique_ptr<migration::RedisClient> client_;
};

void ExpectStatus(const RespValue& v, std::string_view text) {
  EXPECT_EQ(v.type, ReplyType::kStatus) << protocol::DebugString(v);
  EXPECT_EQ(v.str, text);
}

void ExpectError(const RespValue& v, std::string_view text) {
  EXPECT_EQ(v.type, ReplyType::kError) << protocol::DebugString(v);
  EXPECT_EQ(v.str, text);
}

void ExpectBulk(const RespValue& v, std::string_view text) {
  EXPECT_EQ(v.type, ReplyType::kBulk) << protocol::DebugString(v);
  EXPECT_EQ(v.str, text);
}

TEST_F(LocalCommandsTest, PingAndEchoAreAnsweredByTheProxy) {
  // Were PING or ECHO forwarded, the client would see the fake's odd answers.
  node_->SetHandler([](const FakeCommand& c) {
    if (c.Is("PING") || c.Is("ECHO")) return FakeAction::Status("FROM-THE-NODE");
    return FakeAction::Default();
  });
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  ExpectStatus(Cmd(client_.get(), {"PING"}), "PONG");
  ExpectBulk(Cmd(client_.get(), {"ping", "hello world"}), "hello world");
  ExpectBulk(Cmd(client_.get(), {"ECHO", "x\r\ny"}), "x\r\ny");
  ExpectError(Cmd(client_.get(), {"PING", "a", "b"}), "ERR wrong number of arguments for 'ping' command");
  EXPECT_EQ(DataPathCommands(), 0u) << DescribeLog();
  EXPECT_EQ(node_->CountCommands("ECHO"), 0u);
}

TEST_F(LocalCommandsTest, QuitAnswersOkThenClosesWithoutServingLaterCommands) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  RawClient raw(proxy_->port());
  raw.Send("PING\r\n*1\r\n$4\r\nQUIT\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  std::string got;
  EXPECT_TRUE(raw.ReadUntilClosed(&got));
  EXPECT_EQ(got, "+PONG\r\n+OK\r\n");
  EXPECT_EQ(node_->CountCommands("GET"), 0u);
}

TEST_F(LocalCommandsTest, SelectAllowsOnlyDatabaseZero) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  ExpectStatus(Cmd(client_.get(), {"SELECT", "0"}), "OK");
  ExpectError(Cmd(client_.get(), {"SELECT", "1"}), "ERR SELECT is not allowed in cluster mode");
  ExpectError(Cmd(client_.get(), {"SELECT", "x"}), "ERR value is not an integer or out of range");
}

TEST_F(LocalCommandsTest, HelloDescribesARespTwoServer) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  for (auto args : {std::vector<std::string_view>{"HELLO"}, std::vector<std::string_view>{"HELLO", "2"}}) {
    auto reply = client_->Command(absl::MakeConstSpan(args));
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(reply->type, ReplyType::kArray) << protocol::DebugString(*reply);
    const auto& e = reply->elements;
    ASSERT_EQ(e.size(), 14u) << protocol::DebugString(*reply);
    EXPECT_EQ(e[0].str, "server");
    EXPECT_EQ(e[1].str, "redis");
    EXPECT_EQ(e[2].str, "version");
    EXPECT_EQ(e[3].str, "7.0.15");  // learned from the cluster's INFO
    EXPECT_EQ(e[4].str, "proto");
    EXPECT_EQ(e[5].type, ReplyType::kInteger);
    EXPECT_EQ(e[5].integer, 2);
    EXPECT_EQ(e[6].str, "id");
    EXPECT_EQ(e[7].type, ReplyType::kInteger);
    EXPECT_EQ(e[8].str, "mode");
    EXPECT_EQ(e[10].str, "role");
    EXPECT_EQ(e[11].str, "master");
    EXPECT_EQ(e[12].str, "modules");
    EXPECT_EQ(e[13].type, ReplyType::kArray);
  }
  ExpectError(Cmd(client_.get(), {"HELLO", "3"}), "NOPROTO unsupported protocol version");
  ExpectError(Cmd(client_.get(), {"HELLO", "x"}), "ERR Protocol version is not an integer or out of range");
  auto named = Cmd(client_.get(), {"HELLO", "2", "SETNAME", "app-1"});
  EXPECT_EQ(named.type, ReplyType::kArray);
  ExpectBulk(Cmd(client_.get(), {"CLIENT", "GETNAME"}), "app-1");
}

TEST_F(LocalCommandsTest, AuthWithoutAConfiguredPasswordFailsLikeRedis) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  ExpectError(Cmd(client_.get(), {"AUTH", "secret"}),
              "ERR AUTH <password> called without any password configured for the default user. "
              "Are you sure your configuration is correct?");
  ExpectError(Cmd(client_.get(), {"AUTH", "default", "secret"}),
              "WRONGPASS invalid username-password pair or user is disabled.");
  node_->Set("k", "v");
  ExpectBulk(Cmd(client_.get(), {"GET", "k"}), "v");  // no AUTH needed
}

TEST_F(LocalCommandsTest, ClientPasswordGatesEveryCommandUntilAuth) {
  ASSERT_NO_FATAL_FAILURE(StartProxy("s3cret"));
  node_->Set("k", "v");
  ExpectError(Cmd(client_.get(), {"GET", "k"}), "NOAUTH Authentication required.");
  ExpectError(Cmd(client_.get(), {"PING"}), "NOAUTH Authentication required.");
  ExpectError(Cmd(client_.get(), {"HELLO", "2"}),
              "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
              "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
              "select the RESP protocol version at the same time");
  ExpectError(Cmd(client_.get(), {"AUTH", "wrong"}),
              "WRONGPASS invalid username-password pair or user is disabled.");
  ExpectError(Cmd(client_.get(), {"AUTH", "admin", "s3cret"}),
              "WRONGPASS invalid username-password pair or user is disabled.");
  ExpectError(Cmd(client_.get(), {"GET", "k"}), "NOAUTH Authentication required.");
  EXPECT_EQ(node_->CountCommands("GET"), 0u);

  ExpectStatus(Cmd(client_.get(), {"AUTH", "s3cret"}), "OK");
  ExpectBulk(Cmd(client_.get(), {"GET", "k"}), "v");
  ExpectStatus(Cmd(client_.get(), {"AUTH", "default", "s3cret"}), "OK");

  auto other = proxy_->Connect();  // authentication is per connection
  ASSERT_NE(other, nullptr);
  ExpectError(Cmd(other.get(), {"GET", "k"}), "NOAUTH Authentication required.");
  auto hello = Cmd(other.get(), {"HELLO", "2", "AUTH", "default", "s3cret"});
  EXPECT_EQ(hello.type, ReplyType::kArray) << protocol::DebugString(hello);
  ExpectBulk(Cmd(other.get(), {"GET", "k"}), "v");
  EXPECT_EQ(node_->CountCommands("AUTH"), 0u);  // client AUTH never reaches the cluster
}

TEST_F(LocalCommandsTest, ClientSetNameGetNameAndId) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  auto unnamed = Cmd(client_.get(), {"CLIENT", "GETNAME"});
  EXPECT_EQ(unnamed.type, ReplyType::kNil) << protocol::DebugString(unnamed);
  ExpectStatus(Cmd(client_.get(), {"CLIENT", "SETNAME", "worker-7"}), "OK");
  ExpectBulk(Cmd(client_.get(), {"client", "getname"}), "worker-7");
  ExpectError(Cmd(client_.get(), {"CLIENT", "SETNAME", "a b"}),
              "ERR Client names cannot contain spaces, newlines or special characters.");
  ExpectBulk(Cmd(client_.get(), {"CLIENT", "GETNAME"}), "worker-7");
  ExpectError(Cmd(client_.get(), {"CLIENT", "SETNAME"}),
              "ERR wrong number of arguments for 'client|setname' command");

  auto other = proxy_->Connect();
  ASSERT_NE(other, nullptr);
  RespValue id1 = Cmd(client_.get(), {"CLIENT", "ID"});
  RespValue id2 = Cmd(other.get(), {"CLIENT", "ID"});
  ASSERT_EQ(id1.type, ReplyType::kInteger);
  ASSERT_EQ(id2.type, ReplyType::kInteger);
  EXPECT_GT(id1.integer, 0);
  EXPECT_NE(id1.integer, id2.integer);
  EXPECT_EQ(Cmd(client_.get(), {"CLIENT", "ID"}).integer, id1.integer);
  EXPECT_EQ(DataPathCommands(), 0u);
}

TEST_F(LocalCommandsTest, ClusterKeySlotMatchesRedis) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  EXPECT_EQ(Cmd(client_.get(), {"CLUSTER", "KEYSLOT", "somekey"}).integer, 11058);
  EXPECT_EQ(Cmd(client_.get(), {"CLUSTER", "KEYSLOT", "foo{hash_tag}"}).integer, 2515);
  EXPECT_EQ(Cmd(client_.get(), {"cluster", "keyslot", "foo"}).integer, 12182);
}

TEST_F(LocalCommandsTest, InfoCarriesTheProxySection) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  RespValue info = Cmd(client_.get(), {"INFO"});
  ASSERT_EQ(info.type, ReplyType::kBulk) << protocol::DebugString(info);
  EXPECT_NE(info.str.find("# Server\r\n"), std::string::npos) << info.str;
  EXPECT_NE(info.str.find("redis_version:7.0.15\r\n"), std::string::npos) << info.str;
  EXPECT_NE(info.str.find("# Proxy\r\n"), std::string::npos) << info.str;
  EXPECT_NE(info.str.find("proxy_topology_version:1\r\n"), std::string::npos) << info.str;
  EXPECT_NE(info.str.find("proxy_masters:1\r\n"), std::string::npos) << info.str;
}

TEST_F(LocalCommandsTest, InfoSumsKeyspaceOverMastersAndReportsTheProxysClients) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  node_->SetHandler([](const FakeCommand& c) {
    return c.Is("INFO", "keyspace")
               ? FakeAction::Bulk("# Keyspace\r\ndb0:keys=10,expires=4,avg_ttl=1000\r\n")
               : FakeAction::Default();
  });
  RespValue info = Cmd(client_.get(), {"INFO"});
  ASSERT_EQ(info.type, ReplyType::kBulk) << protocol::DebugString(info);
  EXPECT_NE(info.str.find("\r\n# Keyspace\r\ndb0:keys=10,expires=4,avg_ttl=1000\r\n"),
            std::string::npos) << info.str;
  EXPECT_NE(info.str.find("connected_clients:1\r\n"), std::string::npos) << info.str;
  EXPECT_NE(info.str.find("blocked_clients:0\r\n"), std::string::npos) << info.str;
  RespValue clients = Cmd(client_.get(), {"INFO", "clients"});
  EXPECT_EQ(clients.str.find("# Server"), std::string::npos) << clients.str;
  EXPECT_EQ(clients.str.find("# Keyspace"), std::string::npos) << clients.str;
  ExpectBulk(Cmd(client_.get(), {"INFO", "nosuchsection"}), "");
}

TEST_F(LocalCommandsTest, ClientListAndInfoDescribeTheProxysOwnClients) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  auto other = proxy_->Connect();
  ASSERT_NE(other, nullptr);
  ExpectStatus(Cmd(other.get(), {"CLIENT", "SETNAME", "second"}), "OK");
  int64_t id = Cmd(client_.get(), {"CLIENT", "ID"}).integer;
  RespValue list = Cmd(client_.get(), {"CLIENT", "LIST"});
  ASSERT_EQ(list.type, ReplyType::kBulk) << protocol::DebugString(list);
  EXPECT_EQ(std::count(list.str.begin(), list.str.end(), '\n'), 2) << list.str;
  EXPECT_EQ(list.str.rfind(StrCat("id=", id, " addr=127.0.0.1:"), 0), 0u) << list.str;
  EXPECT_NE(list.str.find(" name=second age="), std::string::npos) << list.str;
  EXPECT_NE(list.str.find(" flags=N db=0 "), std::string::npos) << list.str;
  EXPECT_NE(list.str.find(" cmd=client|list user=default redir=-1 resp=2\n"), std::string::npos) << list.str;
  RespValue info = Cmd(client_.get(), {"CLIENT", "INFO"});
  EXPECT_EQ(info.str.rfind(StrCat("id=", id, " "), 0), 0u) << info.str;
  EXPECT_NE(info.str.find(" cmd=client|info "), std::string::npos) << info.str;
  ExpectBulk(Cmd(client_.get(), {"CLIENT", "LIST", "TYPE", "pubsub"}), "");
  ExpectError(Cmd(client_.get(), {"CLIENT", "LIST", "TYPE", "x"}), "ERR Unknown client type 'x'");
  ExpectError(Cmd(client_.get(), {"CLIENT", "LIST", "ID", "abc"}), "ERR Invalid client ID");
  ExpectError(Cmd(client_.get(), {"CLIENT", "LIST", "ID"}), "ERR syntax error");
  RespValue one = Cmd(client_.get(), {"CLIENT", "LIST", "ID", std::to_string(id)});
  EXPECT_EQ(std::count(one.str.begin(), one.str.end(), '\n'), 1) << one.str;
  EXPECT_EQ(DataPathCommands(), 0u) << DescribeLog();
}

TEST(LocalCommandsFormatTest, ClientLineHasRedisFieldsInRedisOrder) {
  proxy::ClientRow row;
  row.id = 7;
  row.fd = 12;
  row.addr = "127.0.0.1:5000";
  row.laddr = "127.0.0.1:6379";
  row.created_ms = 1000;
  row.last_command_ms = 5000;
  row.last_command = protocol::LookupCommand("get");
  row.SetFlag(proxy::ClientRow::kBlocked, true);
  EXPECT_EQ(proxy::FormatClientLine(row, "app", 12000),
            "id=7 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=12 name=app age=11 idle=7 flags=b "
            "db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 "
            "rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=get user=default redir=-1 resp=2\n");
}

TEST(LocalCommandsFormatTest, KeyspaceLinesSumKeysAndWeighTtlsByExpires) {
  std::string_view infos[] = {"# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n",
                              "# Keyspace\r\n",
                              "# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\n"};
  EXPECT_EQ(proxy::MergeKeyspaceLines(infos), "db0:keys=15,expires=8,avg_ttl=2500\r\n");
  EXPECT_EQ(proxy::MergeKeyspaceLines({infos[1]}), "");
}

TEST_F(LocalCommandsTest, MonitorAndClusterNodesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  ExpectError(Cmd(client_.get(), {"MONITOR"}),
              "ERR slotpilot: 'MONITOR' is not allowed through the proxy");
  ExpectError(Cmd(client_.get(), {"CLUSTER", "NODES"}),
              "ERR slotpilot: 'CLUSTER NODES' is not allowed through the proxy");
  ExpectError(Cmd(client_.get(), {"CLUSTER", "SETSLOT", "1", "STABLE"}),
              "ERR slotpilot: 'CLUSTER SETSLOT' is not allowed through the proxy");
  ExpectStatus(Cmd(client_.get(), {"PING"}), "PONG");  // the connection is still usable
  EXPECT_EQ(DataPathCommands(), 0u);
}

TEST_F(LocalCommandsTest, UnknownCommandAndWrongArityUseRedisTexts) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  ExpectError(Cmd(client_.get(), {"FOOBAR", "a", "b"}),
              "ERR unknown command 'FOOBAR', with args beginning with: 'a' 'b' ");
  ExpectError(Cmd(client_.get(), {"nope"}), "ERR unknown command 'nope', with args beginning with: ");
  ExpectError(Cmd(client_.get(), {"GET"}), "ERR wrong number of arguments for 'get' command");
  ExpectError(Cmd(client_.get(), {"SET", "k"}), "ERR wrong number of arguments for 'set' command");
  EXPECT_EQ(DataPathCommands(), 0u);
}

TEST_F(LocalCommandsTest, MultiKeyCommandsThatCannotBeSplitMustStayInOneSlot) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  node_->SetHandler([](const FakeCommand& c) {
    return c.Is("MSETNX") ? FakeAction::Integer(1) : FakeAction::Default();
  });
  ASSERT_NE(protocol::KeyHashSlot("a"), protocol::KeyHashSlot("b"));
  // MSETNX is all-or-nothing, RENAME moves one key onto another: neither can be split per slot.
  ExpectError(Cmd(client_.get(), {"MSETNX", "a", "1", "b", "2"}),
              "CROSSSLOT Keys in request don't hash to the same slot");
  ExpectError(Cmd(client_.get(), {"RENAME", "a", "b"}),
              "CROSSSLOT Keys in request don't hash to the same slot");
  EXPECT_EQ(DataPathCommands(), 0u) << DescribeLog();
  RespValue same_slot = Cmd(client_.get(), {"MSETNX", "{t}a", "1", "{t}b", "2"});
  EXPECT_EQ(same_slot.type, ReplyType::kInteger) << protocol::DebugString(same_slot);
  auto forwarded = node_->CountIf([](const FakeCommand& c) {
    return c.argv == std::vector<std::string>{"MSETNX", "{t}a", "1", "{t}b", "2"};
  });
  EXPECT_EQ(forwarded, 1u);
}

TEST_F(LocalCommandsTest, KeylessCommandsWithoutProxySupportGetAClearError) {
  ASSERT_NO_FATAL_FAILURE(StartProxy());
  // Keyless, and no single node's answer (nor a merge of all) would be right for the client.
  ExpectError(Cmd(client_.get(), {"PUBSUB", "SHARDNUMSUB", "ch"}),
              "ERR slotpilot: 'PUBSUB SHARDNUMSUB' is not supported by the proxy yet");
  ExpectError(Cmd(client_.get(), {"SCRIPT", "DEBUG", "YES"}),
              "ERR slotpilot: 'SCRIPT DEBUG' is not supported by the proxy yet");
  ExpectStatus(Cmd(client_.get(), {"PING"}), "PONG");  // the connection is still usable
  EXPECT_EQ(DataPathCommands(), 0u) << DescribeLog();
}

}  // namespace
}  // namespace slotpilot::testing
