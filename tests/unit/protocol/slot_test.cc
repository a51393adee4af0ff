#include "protocol/slot.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/resp.h"
#include "tests/support/redis_server.h"

namespace slotpilot::protocol {
namespace {

using namespace std::string_view_literals;

uint16_t WholeKeySlot(std::string_view key) { return Crc16(key) % kSlotCount; }

TEST(SlotCrc16, XmodemCheckValue) {
  // The standard CRC-16/XMODEM check value, also the one in Redis's crc16.c header comment.
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
}

TEST(SlotCrc16, EmptyIsZero) { EXPECT_EQ(Crc16(""), 0); }

TEST(SlotCrc16, HandlesEveryByteValue) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  // Bit-by-bit reference (poly 0x1021, init 0), independent of the table.
  uint16_t crc = 0;
  for (char c : all) {
    crc ^= static_cast<uint16_t>(static_cast<uint8_t>(c) << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  EXPECT_EQ(Crc16(all), crc);
}

TEST(SlotKeyHashSlot, KnownSlots) {
  // Values from CLUSTER KEYSLOT on redis-server 7.0.
  EXPECT_EQ(KeyHashSlot("foo"), 12182);
  EXPECT_EQ(KeyHashSlot("bar"), 5061);
  EXPECT_EQ(KeyHashSlot("somekey"), 11058);
}

TEST(SlotKeyHashSlot, HashTagSharesSlot) {
  EXPECT_EQ(KeyHashSlot("{user1000}.following"), KeyHashSlot("{user1000}.followers"));
  EXPECT_EQ(KeyHashSlot("{user1000}.following"), KeyHashSlot("user1000"));
}

TEST(SlotKeyHashSlot, EmptyTagHashesWholeKey) {
  EXPECT_EQ(KeyHashSlot("foo{}{bar}"), WholeKeySlot("foo{}{bar}"));
  EXPECT_EQ(KeyHashSlot("{}"), WholeKeySlot("{}"));
}

TEST(SlotKeyHashSlot, TagEndsAtFirstCloseBrace) {
  EXPECT_EQ(KeyHashSlot("foo{{bar}}zap"), WholeKeySlot("{bar"));
}

TEST(SlotKeyHashSlot, OnlyFirstTagCounts) {
  EXPECT_EQ(KeyHashSlot("foo{bar}{zap}"), WholeKeySlot("bar"));
}

TEST(SlotKeyHashSlot, UnclosedOrReversedBracesHashWholeKey) {
  EXPECT_EQ(KeyHashSlot("foo{bar"), WholeKeySlot("foo{bar"));
  EXPECT_EQ(KeyHashSlot("foo}bar{"), WholeKeySlot("foo}bar{"));
  EXPECT_EQ(KeyHashSlot("{"), WholeKeySlot("{"));
  EXPECT_EQ(KeyHashSlot("}{x}"), WholeKeySlot("x"));
}

TEST(SlotKeyHashSlot, EmptyKeyIsSlotZero) { EXPECT_EQ(KeyHashSlot(""), 0); }

TEST(SlotKeyHashSlot, BinaryBytesInTag) {
  const std::string_view key = "a{\0\xff}b"sv;
  EXPECT_EQ(KeyHashSlot(key), WholeKeySlot("\0\xff"sv));
}

// Random keys over a small alphabet that makes braces common, plus arbitrary bytes.
std::string RandomKey(std::mt19937& rng) {
  static constexpr char kAlphabet[] = {'{', '}', '{', '}', 'a', 'b', '\0', '\r', '\n', ' '};
  std::uniform_int_distribution<int> length(0, 24);
  std::uniform_int_distribution<int> pick(0, 13);
  std::uniform_int_distribution<int> byte(0, 255);
  std::string key;
  for (int i = length(rng); i > 0; --i) {
    const int p = pick(rng);
    key.push_back(p < 10 ? kAlphabet[p] : static_cast<char>(byte(rng)));
  }
  return key;
}

TEST(SlotLive, AgreesWithClusterKeyslot) {
  slotpilot::testing::RedisServerOptions options;
  options.cluster_enabled = true;
  auto server = slotpilot::testing::RedisServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = (*server)->Connect();
  ASSERT_TRUE(client.ok()) << client.status();

  const unsigned seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  constexpr int kBatches = 6;
  constexpr int kBatchSize = 1000;
  for (int batch = 0; batch < kBatches; ++batch) {
    std::vector<std::string> keys;
    std::vector<std::vector<std::string>> commands;
    for (int i = 0; i < kBatchSize; ++i) {
      keys.push_back(RandomKey(rng));
      commands.push_back({"CLUSTER", "KEYSLOT", keys.back()});
    }
    auto replies = (*client)->Pipeline(commands);
    ASSERT_TRUE(replies.ok()) << replies.status();
    ASSERT_EQ(replies->size(), keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      const RespValue& reply = (*replies)[i];
      ASSERT_EQ(reply.type, ReplyType::kInteger) << reply.str;
      ASSERT_EQ(KeyHashSlot(keys[i]), reply.integer)
          << "key (hex escaped): " << ::testing::PrintToString(keys[i]);
    }
  }
}

}  // namespace
}  // namespace slotpilot::protocol
