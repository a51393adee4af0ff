#include "proxy/ring_buffer.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <random>
#include <string>

namespace slotpilot::proxy {
namespace {

TEST(RingBufferTest, StartsEmpty) {
  RingBuffer<int> ring;
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.size(), 0u);
}

TEST(RingBufferTest, FifoOrderAcrossGrowth) {
  RingBuffer<int> ring(2);
  for (int i = 0; i < 1000; ++i) {
    ring.push_back(i);
    EXPECT_EQ(ring.back(), i);
    EXPECT_EQ(ring.front(), 0);
  }
  EXPECT_EQ(ring.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(ring.pop_front(), i);
  EXPECT_TRUE(ring.empty());
}

TEST(RingBufferTest, FifoOrderAcrossWrapAroundAndGrowthWhileWrapped) {
  RingBuffer<int> ring(4);
  ring.push_back(0);
  ring.push_back(1);
  ring.push_back(2);
  EXPECT_EQ(ring.pop_front(), 0);
  EXPECT_EQ(ring.pop_front(), 1);
  // head is at slot 2 of 4: these wrap to slots 3, 0, 1, then the ring is full.
  ring.push_back(3);
  ring.push_back(4);
  ring.push_back(5);
  EXPECT_EQ(ring.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(ring[i], static_cast<int>(i) + 2);
  ring.push_back(6);  // grows while wrapped: the order must survive the copy
  ring.push_back(7);
  EXPECT_EQ(ring.size(), 6u);
  for (int expected = 2; expected <= 7; ++expected) EXPECT_EQ(ring.pop_front(), expected);
  EXPECT_TRUE(ring.empty());
}

TEST(RingBufferTest, PushFrontPutsAnElementFirst) {
  RingBuffer<std::string> ring(4);
  ring.push_back("b");
  ring.push_back("c");
  ring.push_front("a");  // head wraps backwards from slot 0
  EXPECT_EQ(ring.front(), "a");
  EXPECT_EQ(ring.back(), "c");
  EXPECT_EQ(ring.size(), 3u);
  ring.push_front("0");
  ring.push_front("-1");  // full: grows
  EXPECT_EQ(ring.size(), 5u);
  const char* expected[] = {"-1", "0", "a", "b", "c"};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(ring[i], expected[i]) << i;
  for (const char* e : expected) EXPECT_EQ(ring.pop_front(), e);
}

TEST(RingBufferTest, IndexingCountsFromTheFront) {
  RingBuffer<int> ring(8);
  for (int i = 0; i < 6; ++i) ring.push_back(i);
  for (int i = 0; i < 4; ++i) ring.pop_front();
  for (int i = 6; i < 12; ++i) ring.push_back(i);  // wraps
  ASSERT_EQ(ring.size(), 8u);
  for (size_t i = 0; i < ring.size(); ++i) EXPECT_EQ(ring[i], static_cast<int>(i) + 4);
  ring[3] = 100;
  EXPECT_EQ(ring[3], 100) << "operator[] gives a reference";
  ring.front() = -4;
  ring.back() = -11;
  EXPECT_EQ(ring.pop_front(), -4);
  EXPECT_EQ(ring[ring.size() - 1], -11);
}

TEST(RingBufferTest, ClearEmptiesAndReleasesElements) {
  auto tracked = std::make_shared<int>(7);
  RingBuffer<std::shared_ptr<int>> ring(4);
  for (int i = 0; i < 10; ++i) ring.push_back(tracked);
  EXPECT_EQ(tracked.use_count(), 11);
  ring.clear();
  EXPECT_TRUE(ring.empty());
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_EQ(tracked.use_count(), 1) << "cleared slots hold no element";
  ring.push_back(std::make_shared<int>(1));
  ring.push_back(std::make_shared<int>(2));
  EXPECT_EQ(*ring.front(), 1);
  EXPECT_EQ(*ring.back(), 2);
}

TEST(RingBufferTest, PopReleasesTheSlot) {
  auto tracked = std::make_shared<int>(7);
  RingBuffer<std::shared_ptr<int>> ring(4);
  ring.push_back(tracked);
  {
    std::shared_ptr<int> popped = ring.pop_front();
    EXPECT_EQ(popped, tracked);
  }
  EXPECT_EQ(tracked.use_count(), 1);
}

TEST(RingBufferTest, MoveOnlyElements) {
  RingBuffer<std::unique_ptr<int>> ring(1);
  for (int i = 0; i < 20; ++i) ring.push_back(std::make_unique<int>(i));
  ring.push_front(std::make_unique<int>(-1));
  EXPECT_EQ(*ring.pop_front(), -1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*ring.pop_front(), i);
}

TEST(RingBufferTest, TinyInitialCapacities) {
  for (size_t initial : {size_t{0}, size_t{1}, size_t{3}, size_t{5}}) {
    RingBuffer<int> ring(initial);
    for (int i = 0; i < 9; ++i) ring.push_back(i);
    for (int i = 0; i < 9; ++i) EXPECT_EQ(ring.pop_front(), i) << "initial " << initial;
  }
}

TEST(RingBufferTest, MatchesDequeUnderRandomOperations) {
  std::mt19937 rng(42);
  RingBuffer<int> ring(2);
  std::deque<int> model;
  for (int step = 0; step < 20000; ++step) {
    switch (rng() % 6) {
      case 0:
      case 1:
      case 2:
        ring.push_back(step);
        model.push_back(step);
        break;
      case 3:
        ring.push_front(-step);
        model.push_front(-step);
        break;
      default:
        if (!model.empty()) {
          ASSERT_EQ(ring.pop_front(), model.front());
          model.pop_front();
        }
        break;
    }
    ASSERT_EQ(ring.size(), model.size());
    if (!model.empty()) {
      ASSERT_EQ(ring.front(), model.front());
      ASSERT_EQ(ring.back(), model.back());
      size_t i = rng() % model.size();
      ASSERT_EQ(ring[i], model[i]);
    }
  }
}

}  // namespace
}  // namespace slotpilot::proxy
