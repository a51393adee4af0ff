#include "proxy/script_cache.h"

#include <string>

#include "gtest/gtest.h"

namespace slotpilot::proxy {
namespace {

TEST(ScriptCacheTest, NamesScriptsAsRedisDoes) {
  // What `SCRIPT LOAD "return 1"` answers on Redis.
  EXPECT_EQ(ScriptCache::Sha1Hex("return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
  EXPECT_EQ(ScriptCache::Sha1Hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

TEST(ScriptCacheTest, FindsRememberedBodiesByShaInAnyCase) {
  ScriptCache cache(1024);
  cache.Remember("return 1");
  EXPECT_EQ(cache.Find("e0e1f9fabfc9d4800c877a703b823ac0578ff8db"), "return 1");
  EXPECT_EQ(cache.Find("E0E1F9FABFC9D4800C877A703B823AC0578FF8DB"), "return 1");
  EXPECT_FALSE(cache.Find("ffffffffffffffffffffffffffffffffffffffff").has_value());
  cache.Remember("return 1");  // twice: stored once
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), 8u);
}

TEST(ScriptCacheTest, ForgetsTheOldestBeyondItsBoundAndSaysSo) {
  ScriptCache cache(20);
  uint64_t generation = cache.generation();
  cache.Remember("return 'aaaaaaaa'");  // 17 bytes
  EXPECT_EQ(cache.generation(), generation);
  cache.Remember("return 2");  // 8 more: the first goes
  EXPECT_NE(cache.generation(), generation);
  EXPECT_FALSE(cache.Find(ScriptCache::Sha1Hex("return 'aaaaaaaa'")).has_value());
  EXPECT_EQ(cache.Find(ScriptCache::Sha1Hex("return 2")), "return 2");
  EXPECT_LE(cache.bytes(), 20u);
  cache.Remember(std::string(21, 'x'));  // larger than the bound: never stored
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ScriptCacheTest, ZeroBoundRemembersNothing) {
  ScriptCache cache(0);
  cache.Remember("return 1");
  EXPECT_EQ(cache.size(), 0u);
}

TEST(ScriptCacheTest, ClearForgetsEverything) {
  ScriptCache cache(1024);
  cache.Remember("return 1");
  uint64_t generation = cache.generation();
  cache.Clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_NE(cache.generation(), generation);
}

}  // namespace
}  // namespace slotpilot::proxy
