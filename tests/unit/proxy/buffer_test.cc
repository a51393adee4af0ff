#include "proxy/buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slotpilot::proxy {
namespace {

constexpr size_t kBlockSize = 256;

// ---------------------------------------------------------------------------------------------
// BlockPool

TEST(BlockPoolTest, GetReturnsAnOwnedStandardBlock) {
  BlockPool pool(kBlockSize, 4);
  EXPECT_EQ(pool.block_size(), kBlockSize);
  EXPECT_EQ(pool.allocated_bytes(), 0u);
  EXPECT_EQ(pool.live_blocks(), 0u);

  Block* b = pool.Get();
  EXPECT_EQ(b->capacity(), kBlockSize);
  EXPECT_EQ(b->refs(), 1u);
  EXPECT_EQ(pool.live_blocks(), 1u);
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize);
  // The whole capacity is writable (ASan checks the bounds).
  std::string pattern(b->capacity(), 'x');
  std::copy(pattern.begin(), pattern.end(), b->data());
  EXPECT_EQ(std::string_view(b->data(), b->capacity()), pattern);

  b->Unref();
  EXPECT_EQ(pool.live_blocks(), 0u);
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize) << "a standard block goes to the free list";
}

TEST(BlockPoolTest, SmallRequestsGetAStandardBlockBigOnesTheirSize) {
  BlockPool pool(kBlockSize, 4);
  Block* small = pool.Get(10);
  Block* exact = pool.Get(kBlockSize);
  Block* big = pool.Get(kBlockSize * 3 + 1);
  EXPECT_EQ(small->capacity(), kBlockSize);
  EXPECT_EQ(exact->capacity(), kBlockSize);
  EXPECT_EQ(big->capacity(), kBlockSize * 3 + 1);
  EXPECT_EQ(pool.live_blocks(), 3u);
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize * 2 + kBlockSize * 3 + 1);
  big->data()[big->capacity() - 1] = 'z';  // last byte is in bounds
  small->Unref();
  exact->Unref();
  big->Unref();
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(BlockPoolTest, FreeListIsReusedWithoutNewAllocation) {
  BlockPool pool(kBlockSize, 4);
  Block* first = pool.Get();
  first->Unref();
  size_t allocated = pool.allocated_bytes();

  Block* again = pool.Get(kBlockSize / 2);
  EXPECT_EQ(again, first) << "the free block is handed out again";
  EXPECT_EQ(again->refs(), 1u) << "reference count reset on reuse";
  EXPECT_EQ(pool.allocated_bytes(), allocated);
  EXPECT_EQ(pool.live_blocks(), 1u);
  again->Unref();
}

TEST(BlockPoolTest, BigRequestDoesNotTakeAStandardFreeBlock) {
  BlockPool pool(kBlockSize, 4);
  Block* standard = pool.Get();
  standard->Unref();
  Block* big = pool.Get(kBlockSize + 1);
  EXPECT_NE(big, standard);
  EXPECT_EQ(big->capacity(), kBlockSize + 1);
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize + kBlockSize + 1);
  big->Unref();
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize) << "big block freed at once";
  EXPECT_EQ(pool.Get(), standard) << "the standard block is still on the free list";
  standard->Unref();
}

TEST(BlockPoolTest, FreeListIsBounded) {
  constexpr size_t kMaxFree = 3;
  BlockPool pool(kBlockSize, kMaxFree);
  std::vector<Block*> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(pool.Get());
  EXPECT_EQ(pool.allocated_bytes(), 10 * kBlockSize);
  EXPECT_EQ(pool.live_blocks(), 10u);
  for (Block* b : blocks) b->Unref();
  EXPECT_EQ(pool.live_blocks(), 0u);
  EXPECT_EQ(pool.allocated_bytes(), kMaxFree * kBlockSize) << "only kMaxFree blocks are kept";

  // The kept blocks are served before anything new is allocated.
  std::vector<Block*> again;
  for (size_t i = 0; i < kMaxFree; ++i) again.push_back(pool.Get());
  EXPECT_EQ(pool.allocated_bytes(), kMaxFree * kBlockSize);
  again.push_back(pool.Get());
  EXPECT_EQ(pool.allocated_bytes(), (kMaxFree + 1) * kBlockSize);
  for (Block* b : again) b->Unref();
}

TEST(BlockPoolTest, ZeroFreeListFreesEverything) {
  BlockPool pool(kBlockSize, 0);
  Block* b = pool.Get();
  b->Unref();
  EXPECT_EQ(pool.allocated_bytes(), 0u);
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(BlockPoolTest, BlockReturnsToPoolOnlyAfterLastUnref) {
  BlockPool pool(kBlockSize, 0);
  Block* b = pool.Get();
  b->Ref();
  b->Ref();
  EXPECT_EQ(b->refs(), 3u);
  b->Unref();
  b->Unref();
  EXPECT_EQ(pool.live_blocks(), 1u);
  EXPECT_EQ(pool.allocated_bytes(), kBlockSize);
  b->Unref();
  EXPECT_EQ(pool.live_blocks(), 0u);
  EXPECT_EQ(pool.allocated_bytes(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Slice

// A block filled with `text`; the caller's reference is dropped once slices hold the block.
Block* FilledBlock(BlockPool* pool, std::string_view text) {
  Block* b = pool->Get(text.size());
  std::copy(text.begin(), text.end(), b->data());
  return b;
}

TEST(SliceTest, DefaultIsEmpty) {
  Slice s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.view(), "");
  s.Reset();  // harmless
  EXPECT_TRUE(s.empty());
}

TEST(SliceTest, KeepsItsBlockAlive) {
  BlockPool pool(kBlockSize, 0);
  Block* b = FilledBlock(&pool, "hello world");
  {
    Slice s(b, b->data() + 6, 5);
    EXPECT_EQ(b->refs(), 2u);
    b->Unref();  // the slice is now the only owner
    EXPECT_EQ(pool.live_blocks(), 1u);
    EXPECT_EQ(s.view(), "world");
    EXPECT_EQ(s.size(), 5u);
    EXPECT_FALSE(s.empty());
  }
  EXPECT_EQ(pool.live_blocks(), 0u) << "destroying the last slice releases the block";
}

TEST(SliceTest, CopyAddsAReferenceMoveTransfersIt) {
  BlockPool pool(kBlockSize, 0);
  Block* b = FilledBlock(&pool, "abcdef");
  Slice a(b, b->data(), 6);
  b->Unref();
  EXPECT_EQ(b->refs(), 1u);

  Slice copy(a);
  EXPECT_EQ(b->refs(), 2u);
  EXPECT_EQ(copy.view(), "abcdef");
  EXPECT_EQ(copy.data(), a.data()) << "a copy shares bytes, it does not duplicate them";

  Slice moved(std::move(copy));
  EXPECT_EQ(b->refs(), 2u);
  EXPECT_EQ(moved.view(), "abcdef");
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(copy.data(), nullptr);

  moved.Reset();
  EXPECT_EQ(b->refs(), 1u);
  EXPECT_TRUE(moved.empty());
  a.Reset();
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(SliceTest, CopyAssignmentSwitchesBlocks) {
  BlockPool pool(kBlockSize, 0);
  Block* b1 = FilledBlock(&pool, "one");
  Block* b2 = FilledBlock(&pool, "two");
  Slice s1(b1, b1->data(), 3);
  Slice s2(b2, b2->data(), 3);
  b1->Unref();
  b2->Unref();

  s1 = s2;
  EXPECT_EQ(pool.live_blocks(), 1u) << "b1 lost its only reference";
  EXPECT_EQ(b2->refs(), 2u);
  EXPECT_EQ(s1.view(), "two");

  const Slice& same = s1;
  s1 = same;  // self-assignment keeps the reference count
  EXPECT_EQ(b2->refs(), 2u);
  EXPECT_EQ(s1.view(), "two");

  s1.Reset();
  s2.Reset();
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(SliceTest, MoveAssignmentReleasesTheOldBlock) {
  BlockPool pool(kBlockSize, 0);
  Block* b1 = FilledBlock(&pool, "one");
  Block* b2 = FilledBlock(&pool, "two");
  Slice s1(b1, b1->data(), 3);
  Slice s2(b2, b2->data(), 3);
  b1->Unref();
  b2->Unref();

  s1 = std::move(s2);
  EXPECT_EQ(pool.live_blocks(), 1u);
  EXPECT_EQ(b2->refs(), 1u) << "a move does not add a reference";
  EXPECT_EQ(s1.view(), "two");
  EXPECT_TRUE(s2.empty());  // NOLINT(bugprone-use-after-move)

  Slice& alias = s1;
  s1 = std::move(alias);  // self-move keeps the slice intact
  EXPECT_EQ(s1.view(), "two");
  EXPECT_EQ(b2->refs(), 1u);
}

TEST(SliceTest, RemovePrefixAdvancesWithoutTouchingReferences) {
  BlockPool pool(kBlockSize, 0);
  Block* b = FilledBlock(&pool, "*1\r\n$4\r\nPING\r\n");
  Slice s(b, b->data(), 14);
  b->Unref();
  s.RemovePrefix(4);
  EXPECT_EQ(s.view(), "$4\r\nPING\r\n");
  EXPECT_EQ(b->refs(), 1u);
  s.RemovePrefix(s.size());
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(pool.live_blocks(), 1u) << "an emptied slice still holds its block until Reset";
  s.Reset();
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(SliceTest, StaticSlicesHoldNoBlock) {
  static constexpr std::string_view kPong = "+PONG\r\n";
  Slice s = Slice::Static(kPong);
  EXPECT_EQ(s.view(), kPong);
  EXPECT_EQ(s.data(), kPong.data());
  Slice copy = s;
  copy.RemovePrefix(1);
  EXPECT_EQ(copy.view(), "PONG\r\n");
  EXPECT_EQ(s.view(), kPong) << "copies are independent views";
  copy.Reset();
  s.Reset();
  EXPECT_TRUE(s.empty());
}

// ---------------------------------------------------------------------------------------------
// ReplyArena

TEST(ReplyArenaTest, SmallCopiesShareOneBlock) {
  BlockPool pool(kBlockSize, 4);
  ReplyArena arena(&pool);
  Slice a = arena.Copy("+OK\r\n");
  Slice b = arena.Copy("-ERR boom\r\n");
  Slice c = arena.Copy(":42\r\n");
  EXPECT_EQ(a.view(), "+OK\r\n");
  EXPECT_EQ(b.view(), "-ERR boom\r\n");
  EXPECT_EQ(c.view(), ":42\r\n");
  EXPECT_EQ(b.data(), a.data() + a.size()) << "appended to the same block";
  EXPECT_EQ(c.data(), b.data() + b.size());
  EXPECT_EQ(pool.live_blocks(), 1u);
}

TEST(ReplyArenaTest, CopiesAreIndependentOfTheSource) {
  BlockPool pool(kBlockSize, 4);
  ReplyArena arena(&pool);
  std::string source = "$3\r\nfoo\r\n";
  Slice s = arena.Copy(source);
  source.assign(source.size(), '#');
  EXPECT_EQ(s.view(), "$3\r\nfoo\r\n");
  EXPECT_NE(s.data(), source.data());
}

TEST(ReplyArenaTest, FullBlockIsReleasedOnceEverySliceDies) {
  BlockPool pool(kBlockSize, 0);
  {
    ReplyArena arena(&pool);
    std::string chunk(kBlockSize / 4, 'a');
    std::vector<Slice> first_block;
    for (int i = 0; i < 4; ++i) first_block.push_back(arena.Copy(chunk));
    EXPECT_EQ(pool.live_blocks(), 1u);

    Slice next = arena.Copy("x");  // does not fit: the arena moves on
    EXPECT_EQ(next.view(), "x");
    EXPECT_EQ(pool.live_blocks(), 2u) << "the full block lives while its slices do";
    for (const Slice& s : first_block) EXPECT_EQ(s.view(), chunk);

    first_block.pop_back();
    first_block.erase(first_block.begin());
    EXPECT_EQ(pool.live_blocks(), 2u);
    first_block.clear();
    EXPECT_EQ(pool.live_blocks(), 1u) << "released with its last slice";
    EXPECT_EQ(pool.allocated_bytes(), kBlockSize);

    next.Reset();
    EXPECT_EQ(pool.live_blocks(), 1u) << "the arena keeps its current block";
  }
  EXPECT_EQ(pool.live_blocks(), 0u) << "the arena's destructor drops its reference";
  EXPECT_EQ(pool.allocated_bytes(), 0u);
}

TEST(ReplyArenaTest, SlicesOutliveTheArena) {
  BlockPool pool(kBlockSize, 0);
  Slice survivor;
  {
    ReplyArena arena(&pool);
    survivor = arena.Copy("-ERR slotpilot: timed out\r\n");
  }
  EXPECT_EQ(pool.live_blocks(), 1u);
  EXPECT_EQ(survivor.view(), "-ERR slotpilot: timed out\r\n");
  survivor.Reset();
  EXPECT_EQ(pool.live_blocks(), 0u);
}

TEST(ReplyArenaTest, LargeCopyGetsItsOwnBlockFreedWithItsSlice) {
  BlockPool pool(kBlockSize, 4);
  ReplyArena arena(&pool);
  Slice small = arena.Copy("+OK\r\n");
  size_t before = pool.allocated_bytes();

  std::string big(kBlockSize * 4 + 3, 'v');
  big.front() = '<';
  big.back() = '>';
  Slice large = arena.Copy(big);
  EXPECT_EQ(large.view(), big);
  EXPECT_EQ(pool.allocated_bytes(), before + big.size()) << "sized exactly for the copy";
  EXPECT_EQ(small.view(), "+OK\r\n") << "earlier copies are untouched";

  Slice after = arena.Copy("+QUEUED\r\n");  // the big block is full: a new standard block
  EXPECT_EQ(after.view(), "+QUEUED\r\n");
  EXPECT_EQ(pool.allocated_bytes(), 2 * kBlockSize + big.size());
  large.Reset();
  EXPECT_EQ(pool.allocated_bytes(), 2 * kBlockSize) << "the big block is freed with its last slice";
  EXPECT_EQ(pool.live_blocks(), 2u) << "the first block (held by `small`) and the arena's current one";
}

TEST(ReplyArenaTest, EmptyCopyIsAnEmptySlice) {
  BlockPool pool(kBlockSize, 4);
  ReplyArena arena(&pool);
  Slice s = arena.Copy("");
  EXPECT_TRUE(s.empty());
  Slice t = arena.Copy("+OK\r\n");
  EXPECT_EQ(t.view(), "+OK\r\n");
}

TEST(ReplyArenaTest, ManyCopiesKeepTheirBytes) {
  BlockPool pool(kBlockSize, 2);
  ReplyArena arena(&pool);
  std::vector<std::pair<std::string, Slice>> copies;
  for (int i = 0; i < 500; ++i) {
    std::string text = ":" + std::to_string(i * 7919) + std::string(static_cast<size_t>(i % 37), '.') + "\r\n";
    copies.emplace_back(text, arena.Copy(text));
    if (i % 3 == 0) copies[static_cast<size_t>(i) / 2].second.Reset();  // some die early
  }
  size_t checked = 0;
  for (const auto& [text, slice] : copies) {
    if (slice.empty()) continue;
    EXPECT_EQ(slice.view(), text);
    ++checked;
  }
  EXPECT_GT(checked, 300u);
  copies.clear();
  EXPECT_EQ(pool.live_blocks(), 1u) << "only the arena's current block is left";
}

}  // namespace
}  // namespace slotpilot::proxy
