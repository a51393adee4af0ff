#include "proxy/timer_wheel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace slotpilot::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// Loop clocks are far from zero; tests use a realistic base.
constexpr uint64_t kBase = 7'000'000;

struct Waiter {
  TimerWheel::Node node;
  int id = 0;
  std::function<void(Waiter*)> on_fire;  // optional
};

class TimerWheelTest : public ::testing::Test {
 protected:
  // `count` waiters with ids 0..count-1.
  void MakeWaiters(int count) {
    waiters_.clear();
    waiters_.resize(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      waiters_[static_cast<size_t>(i)].id = i;
      waiters_[static_cast<size_t>(i)].node.owner = &waiters_[static_cast<size_t>(i)];
    }
  }
  Waiter& w(int id) { return waiters_[static_cast<size_t>(id)]; }
  void Schedule(TimerWheel* wheel, int id, uint64_t due) { wheel->Schedule(&w(id).node, due); }

  // Advances and returns the ids fired, in firing order.
  std::vector<int> Advance(TimerWheel* wheel, uint64_t now) {
    std::vector<int> fired;
    wheel->Advance(now, [&](TimerWheel::Node* n) {
      auto* waiter = static_cast<Waiter*>(n->owner);
      EXPECT_FALSE(n->scheduled()) << "a node is unlinked before it fires";
      EXPECT_LE(n->due_ms, now) << "fired early: id " << waiter->id;
      fired.push_back(waiter->id);
      if (waiter->on_fire) waiter->on_fire(waiter);
    });
    return fired;
  }

  std::vector<Waiter> waiters_;
};

TEST_F(TimerWheelTest, ScheduleAndCancel) {
  TimerWheel wheel(10, 16);
  EXPECT_EQ(wheel.tick_ms(), 10u);
  MakeWaiters(2);
  EXPECT_FALSE(w(0).node.scheduled());
  Schedule(&wheel, 0, kBase + 50);
  EXPECT_TRUE(w(0).node.scheduled());
  EXPECT_EQ(w(0).node.due_ms, kBase + 50);
  EXPECT_EQ(wheel.size(), 1u);

  Schedule(&wheel, 0, kBase + 500);  // rescheduling moves the node, it is not added twice
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_EQ(w(0).node.due_ms, kBase + 500);

  wheel.Cancel(&w(1).node);  // never scheduled: no-op
  EXPECT_EQ(wheel.size(), 1u);
  wheel.Cancel(&w(0).node);
  EXPECT_FALSE(w(0).node.scheduled());
  EXPECT_EQ(wheel.size(), 0u);
  wheel.Cancel(&w(0).node);  // twice: no-op
  EXPECT_EQ(wheel.size(), 0u);

  EXPECT_THAT(Advance(&wheel, kBase + 10'000), IsEmpty()) << "a cancelled node never fires";
}

TEST_F(TimerWheelTest, RescheduledNodeFiresAtItsNewTimeOnly) {
  TimerWheel wheel(10, 16);
  MakeWaiters(1);
  Advance(&wheel, kBase);
  Schedule(&wheel, 0, kBase + 20);
  Schedule(&wheel, 0, kBase + 70);
  EXPECT_THAT(Advance(&wheel, kBase + 30), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 69), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 70), ElementsAre(0));
}

TEST_F(TimerWheelTest, AdvanceFiresExactlyTheDueNodes) {
  TimerWheel wheel(10, 16);
  MakeWaiters(7);
  Advance(&wheel, kBase);
  const uint64_t due[] = {5, 10, 15, 19, 20, 100, 159};
  for (int i = 0; i < 7; ++i) Schedule(&wheel, i, kBase + due[i]);
  EXPECT_EQ(wheel.size(), 7u);

  EXPECT_THAT(Advance(&wheel, kBase + 4), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 9), ElementsAre(0));
  EXPECT_THAT(Advance(&wheel, kBase + 14), ElementsAre(1)) << "due 15 shares the tick: not yet";
  EXPECT_THAT(Advance(&wheel, kBase + 15), ElementsAre(2)) << "same tick visited again";
  EXPECT_THAT(Advance(&wheel, kBase + 20), UnorderedElementsAre(3, 4));
  EXPECT_EQ(wheel.size(), 2u);
  EXPECT_THAT(Advance(&wheel, kBase + 99), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 158), ElementsAre(5));
  EXPECT_THAT(Advance(&wheel, kBase + 159), ElementsAre(6));
  EXPECT_EQ(wheel.size(), 0u);
  for (const Waiter& x : waiters_) EXPECT_FALSE(x.node.scheduled());
}

TEST_F(TimerWheelTest, NodesBeyondOneRevolutionFireOnTimeNotEarly) {
  TimerWheel wheel(10, 8);  // one revolution = 80 ms
  MakeWaiters(5);
  Advance(&wheel, kBase);
  const uint64_t due[] = {5, 85, 165, 250, 645};  // same slot or later laps
  for (int i = 0; i < 5; ++i) Schedule(&wheel, i, kBase + due[i]);

  std::map<int, uint64_t> fired_at;
  for (uint64_t now = kBase; now <= kBase + 700; now += 5) {
    for (int id : Advance(&wheel, now)) {
      EXPECT_TRUE(fired_at.emplace(id, now).second) << "fired twice: " << id;
    }
  }
  ASSERT_EQ(fired_at.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(fired_at[i], kBase + due[i]) << "id " << i;
}

TEST_F(TimerWheelTest, BigJumpVisitsEverySlotOnce) {
  TimerWheel wheel(1, 64);
  MakeWaiters(1100);
  Advance(&wheel, kBase);
  // 1000 due within the jump (many laps, every slot), 100 after it.
  for (int i = 0; i < 1000; ++i) Schedule(&wheel, i, kBase + 1 + static_cast<uint64_t>(i));
  for (int i = 1000; i < 1100; ++i) Schedule(&wheel, i, kBase + 5000 + static_cast<uint64_t>(i));

  std::vector<int> fired = Advance(&wheel, kBase + 2000);
  std::vector<int> expected;
  for (int i = 0; i < 1000; ++i) expected.push_back(i);
  EXPECT_THAT(fired, UnorderedElementsAreArray(expected));
  EXPECT_EQ(wheel.size(), 100u);

  fired = Advance(&wheel, kBase + 1'000'000);
  EXPECT_EQ(fired.size(), 100u);
  EXPECT_EQ(std::set<int>(fired.begin(), fired.end()).size(), 100u);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST_F(TimerWheelTest, FireCallbackMayScheduleAndCancelOtherNodes) {
  TimerWheel wheel(10, 16);
  MakeWaiters(6);
  Advance(&wheel, kBase);
  // 0 (due +10) cancels 1 (due +40), schedules 2 at +20 (due within this advance) and 3 at +500.
  w(0).on_fire = [&](Waiter*) {
    wheel.Cancel(&w(1).node);
    Schedule(&wheel, 2, kBase + 20);
    Schedule(&wheel, 3, kBase + 500);
  };
  // 4 (due +30) schedules 5 into its own, already-visiting slot, already due.
  w(4).on_fire = [&](Waiter*) { Schedule(&wheel, 5, kBase + 31); };
  Schedule(&wheel, 0, kBase + 10);
  Schedule(&wheel, 1, kBase + 40);
  Schedule(&wheel, 4, kBase + 30);
  EXPECT_EQ(wheel.size(), 3u);

  EXPECT_THAT(Advance(&wheel, kBase + 50), UnorderedElementsAre(0, 2, 4, 5));
  EXPECT_FALSE(w(1).node.scheduled());
  EXPECT_TRUE(w(3).node.scheduled());
  EXPECT_EQ(wheel.size(), 1u);
  EXPECT_THAT(Advance(&wheel, kBase + 499), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 500), ElementsAre(3));
}

TEST_F(TimerWheelTest, FireCallbackMayCancelANodeDueInTheSameSlot) {
  TimerWheel wheel(10, 16);
  MakeWaiters(2);
  Advance(&wheel, kBase);
  // Whichever fires first cancels the other: exactly one fires.
  w(0).on_fire = [&](Waiter*) { wheel.Cancel(&w(1).node); };
  w(1).on_fire = [&](Waiter*) { wheel.Cancel(&w(0).node); };
  Schedule(&wheel, 0, kBase + 12);
  Schedule(&wheel, 1, kBase + 13);
  EXPECT_EQ(Advance(&wheel, kBase + 20).size(), 1u);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST_F(TimerWheelTest, PeriodicNodeReschedulesItself) {
  TimerWheel wheel(5, 16);
  MakeWaiters(1);
  Advance(&wheel, kBase);
  uint64_t now = kBase;
  w(0).on_fire = [&](Waiter* self) { wheel.Schedule(&self->node, now + 25); };
  Schedule(&wheel, 0, kBase + 25);
  std::vector<uint64_t> fired_at;
  for (now = kBase; now <= kBase + 200; now += 5) {
    for (int id : Advance(&wheel, now)) {
      EXPECT_EQ(id, 0);
      fired_at.push_back(now - kBase);
    }
  }
  EXPECT_THAT(fired_at, ElementsAre(25, 50, 75, 100, 125, 150, 175, 200));
  EXPECT_EQ(wheel.size(), 1u);
}

TEST_F(TimerWheelTest, ClockGoingBackwardsFiresNothingEarly) {
  TimerWheel wheel(10, 16);
  MakeWaiters(1);
  Advance(&wheel, kBase + 100);
  Schedule(&wheel, 0, kBase + 180);
  EXPECT_THAT(Advance(&wheel, kBase + 50), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 179), IsEmpty());
  EXPECT_THAT(Advance(&wheel, kBase + 180), ElementsAre(0));
}

// Against a model: after every Advance, the fired nodes are exactly the scheduled nodes due by
// then, whatever the order of schedules, cancels, reschedules and step sizes.
TEST_F(TimerWheelTest, MatchesAModelUnderRandomOperations) {
  std::mt19937 rng(7);
  for (uint32_t slots : {4u, 32u, 256u}) {
    TimerWheel wheel(5, slots);
    MakeWaiters(300);
    std::map<int, uint64_t> model;  // id -> due
    uint64_t now = kBase;
    Advance(&wheel, now);
    for (int step = 0; step < 400; ++step) {
      for (int k = 0; k < 5; ++k) {
        int id = static_cast<int>(rng() % waiters_.size());
        if (rng() % 4 == 0) {
          wheel.Cancel(&w(id).node);
          model.erase(id);
        } else {
          // Mostly future, some many laps ahead, a few already due.
          uint64_t due = rng() % 10 == 0 ? now - rng() % 500 : now + 1 + rng() % (rng() % 5 == 0 ? 5000 : 300);
          Schedule(&wheel, id, due);
          model[id] = due;
        }
      }
      ASSERT_EQ(wheel.size(), model.size());
      now += rng() % 10 == 0 ? rng() % 3000 : rng() % 40;
      std::vector<int> fired = Advance(&wheel, now);
      std::vector<int> expected;
      for (auto it = model.begin(); it != model.end();) {
        if (it->second <= now) {
          expected.push_back(it->first);
          it = model.erase(it);
        } else {
          ++it;
        }
      }
      ASSERT_THAT(fired, UnorderedElementsAreArray(expected)) << "slots " << slots << " step " << step;
      ASSERT_EQ(wheel.size(), model.size());
    }
  }
}

// The first Advance must see nodes scheduled before it, however long after them it comes (the
// worker's timer may first tick several slots after the first request was scheduled).
TEST_F(TimerWheelTest, FirstAdvanceFiresNodesScheduledBeforeIt) {
  TimerWheel wheel(2, 1024);
  MakeWaiters(10);
  for (int i = 0; i < 10; ++i) Schedule(&wheel, i, kBase + 3 * static_cast<uint64_t>(i));
  EXPECT_THAT(Advance(&wheel, kBase + 20), UnorderedElementsAre(0, 1, 2, 3, 4, 5, 6));
  EXPECT_THAT(Advance(&wheel, kBase + 27), UnorderedElementsAre(7, 8, 9));
  EXPECT_EQ(wheel.size(), 0u);
}

// A node scheduled with a due time already past fires on the next Advance, not a lap later.
TEST_F(TimerWheelTest, NodeAlreadyDueFiresOnTheNextAdvance) {
  TimerWheel wheel(10, 16);
  MakeWaiters(2);
  Advance(&wheel, kBase + 1000);
  Schedule(&wheel, 0, kBase + 950);
  Schedule(&wheel, 1, kBase + 1000);
  EXPECT_THAT(Advance(&wheel, kBase + 1001), UnorderedElementsAre(0, 1));
  EXPECT_EQ(wheel.size(), 0u);
}

// Shutdown drains a wheel with Advance(~0): every node fires, whether or not the wheel ever
// advanced before.
TEST_F(TimerWheelTest, AdvanceToTheEndOfTimeFiresEveryNode) {
  for (bool advanced_before : {false, true}) {
    TimerWheel wheel(2, 1024);
    MakeWaiters(50);
    if (advanced_before) Advance(&wheel, kBase);
    for (int i = 0; i < 50; ++i) Schedule(&wheel, i, kBase + 1 + 997 * static_cast<uint64_t>(i));
    std::vector<int> fired = Advance(&wheel, ~uint64_t{0});
    EXPECT_EQ(fired.size(), 50u) << "advanced before: " << advanced_before;
    EXPECT_EQ(wheel.size(), 0u);
  }
}

}  // namespace
}  // namespace slotpilot::proxy
