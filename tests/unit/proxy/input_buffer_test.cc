#include "proxy/input_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/buffer.h"

namespace slotpilot::proxy {
namespace {

constexpr size_t kBlockSize = 64;  // small so that every path is reached with short inputs

// One read of `bytes` into the buffer (the bytes must fit the writable region).
void Read(InputBuffer* in, std::string_view bytes) {
  auto [dst, room] = in->WritableRegion();
  ASSERT_GT(room, 0u);
  ASSERT_LE(bytes.size(), room);
  std::memcpy(dst, bytes.data(), bytes.size());
  in->Commit(bytes.size());
}

// `n` distinct, recognisable bytes starting with `tag`.
std::string Bytes(size_t n, char tag) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(tag + static_cast<char>(i % 23));
  return s;
}

bool PointsInto(const char* p, const char* begin, size_t size) { return p >= begin && p < begin + size; }

class InputBufferTest : public ::testing::Test {
 protected:
  BlockPool pool_{kBlockSize, 8};
};

TEST_F(InputBufferTest, TakenSlicesViewTheReadBytesWithoutCopy) {
  InputBuffer in(&pool_);
  EXPECT_EQ(in.buffered(), 0u);
  EXPECT_TRUE(in.unparsed().empty());

  auto [region, room] = in.WritableRegion();
  EXPECT_EQ(room, kBlockSize);
  EXPECT_EQ(pool_.live_blocks(), 1u);
  Read(&in, "*1\r\n$4\r\nPING\r\n*1\r\n");
  EXPECT_EQ(in.buffered(), 18u);
  EXPECT_EQ(in.unparsed(), "*1\r\n$4\r\nPING\r\n*1\r\n");

  Slice ping = in.Take(14);
  EXPECT_EQ(ping.view(), "*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(ping.data(), region) << "the slice points into the read block";
  EXPECT_EQ(in.unparsed(), "*1\r\n");
  in.Skip(2);
  EXPECT_EQ(in.unparsed(), "\r\n");
  EXPECT_EQ(in.buffered(), 2u);
}

TEST_F(InputBufferTest, ConsumedExclusiveBlockIsReusedInPlace) {
  InputBuffer in(&pool_);
  const char* first = in.WritableRegion().first;
  Read(&in, "+OK\r\n+OK\r\n");
  { Slice s = in.Take(5); }  // forwarded and written: the reference is gone
  in.Skip(5);
  in.Settle(/*keep_when_empty=*/true);
  EXPECT_EQ(in.buffered(), 0u);
  EXPECT_EQ(pool_.live_blocks(), 1u);

  auto [again, room] = in.WritableRegion();
  EXPECT_EQ(again, first) << "same block, from its start";
  EXPECT_EQ(room, kBlockSize);
  EXPECT_EQ(pool_.allocated_bytes(), kBlockSize);
}

TEST_F(InputBufferTest, ConsumedBlockStillReferencedIsReleased) {
  InputBuffer in(&pool_);
  const char* first = in.WritableRegion().first;
  Read(&in, "$5\r\nhello\r\n");
  Slice reply = in.Take(11);
  in.Settle(/*keep_when_empty=*/true);
  EXPECT_EQ(pool_.live_blocks(), 1u) << "only the slice keeps the block";

  auto [next, room] = in.WritableRegion();
  EXPECT_NE(next, first) << "the referenced block must not be overwritten";
  EXPECT_EQ(room, kBlockSize);
  EXPECT_EQ(pool_.live_blocks(), 2u);
  std::memset(next, 'Z', room);
  in.Commit(room);
  EXPECT_EQ(reply.view(), "$5\r\nhello\r\n");

  reply.Reset();
  EXPECT_EQ(pool_.live_blocks(), 1u);
}

TEST_F(InputBufferTest, ConsumedBlockIsReleasedWhenNotKept) {
  InputBuffer in(&pool_);
  Read(&in, "+OK\r\n");
  in.Skip(5);
  in.Settle(/*keep_when_empty=*/false);
  EXPECT_EQ(pool_.live_blocks(), 0u);
  EXPECT_EQ(in.buffered(), 0u);
  EXPECT_TRUE(in.unparsed().empty());
  // Reading again takes a block from the pool's free list.
  Read(&in, "+PONG\r\n");
  EXPECT_EQ(in.unparsed(), "+PONG\r\n");
  EXPECT_EQ(pool_.allocated_bytes(), kBlockSize);
}

TEST_F(InputBufferTest, IncompleteFrameStaysWhileTheBlockHasRoom) {
  InputBuffer in(&pool_);
  const char* first = in.WritableRegion().first;
  Read(&in, "+OK\r\n$10\r\nabc");
  Slice ok = in.Take(5);
  in.Settle(true);
  EXPECT_EQ(in.unparsed().data(), first + 5) << "nothing moved";
  EXPECT_EQ(in.unparsed(), "$10\r\nabc");
  EXPECT_EQ(in.WritableRegion().first, first + 13);
  Read(&in, "defghij\r\n");
  EXPECT_EQ(in.unparsed(), "$10\r\nabcdefghij\r\n");
  EXPECT_EQ(ok.view(), "+OK\r\n");
}

TEST_F(InputBufferTest, SmallExclusiveTailMovesToTheFrontOfTheSameBlock) {
  InputBuffer in(&pool_);
  const char* first = in.WritableRegion().first;
  std::string consumed = Bytes(50, 'a');
  std::string tail = Bytes(10, 'A');
  Read(&in, consumed + tail);  // 4 bytes of room left: less than block_size / 8
  { Slice s = in.Take(50); }
  in.Settle(true);
  EXPECT_EQ(in.unparsed(), tail);
  EXPECT_EQ(in.unparsed().data(), first) << "moved within the block";
  EXPECT_EQ(pool_.live_blocks(), 1u);
  EXPECT_EQ(pool_.allocated_bytes(), kBlockSize) << "no new block";
  auto [next, room] = in.WritableRegion();
  EXPECT_EQ(next, first + tail.size());
  EXPECT_EQ(room, kBlockSize - tail.size());
}

TEST_F(InputBufferTest, TailOfReferencedBlockMovesAndTakenSlicesStayIntact) {
  InputBuffer in(&pool_);
  const char* first = in.WritableRegion().first;
  std::string frame = Bytes(50, 'a');
  std::string tail = Bytes(10, 'A');
  Read(&in, frame + tail);
  Slice taken = in.Take(50);  // still queued for writing: the block is shared
  in.Settle(true);
  EXPECT_EQ(in.unparsed(), tail);
  EXPECT_FALSE(PointsInto(in.unparsed().data(), first, kBlockSize)) << "copied to a new block";
  EXPECT_EQ(pool_.live_blocks(), 2u);

  // Fill the new block completely: the taken bytes are elsewhere and must not change.
  auto [next, room] = in.WritableRegion();
  std::memset(next, 'Z', room);
  in.Commit(room);
  EXPECT_EQ(taken.view(), frame);
  EXPECT_EQ(in.unparsed().substr(0, tail.size()), tail);

  taken.Reset();
  EXPECT_EQ(pool_.live_blocks(), 1u) << "the old block died with its last slice";
}

TEST_F(InputBufferTest, LargeExclusiveTailMovesToADoubledBlock) {
  InputBuffer in(&pool_);
  std::string tail = Bytes(40, 'A');  // more than half a block: worth a bigger block
  Read(&in, Bytes(20, 'a') + tail);
  in.Skip(20);
  in.Settle(true);
  EXPECT_EQ(in.unparsed(), tail);
  EXPECT_EQ(pool_.live_blocks(), 1u);
  auto [next, room] = in.WritableRegion();
  EXPECT_EQ(next, in.unparsed().data() + tail.size());
  EXPECT_EQ(room, 40u) << "a block of twice the 40 pending bytes";
}

TEST_F(InputBufferTest, FrameSizeHintGrowsTheBlockOnceToTheWholeFrame) {
  InputBuffer in(&pool_);
  constexpr size_t kFrame = 1000;
  std::string frame = Bytes(kFrame, 'a');
  Read(&in, frame.substr(0, 30));  // the header said: 1000 bytes in all
  in.Settle(true, kFrame);
  const char* moved_to = in.unparsed().data();
  EXPECT_EQ(in.unparsed(), frame.substr(0, 30));
  EXPECT_GE(in.WritableRegion().second, kFrame - 30) << "room for the whole frame";

  size_t moves = 0;
  for (size_t off = 30; off < kFrame; off += 10) {
    Read(&in, frame.substr(off, 10));
    const char* before = in.unparsed().data();
    in.Settle(true, kFrame);
    if (in.unparsed().data() != before) ++moves;
  }
  EXPECT_EQ(moves, 0u);
  EXPECT_EQ(in.unparsed().data(), moved_to);
  Slice whole = in.Take(kFrame);
  EXPECT_EQ(whole.view(), frame);
  EXPECT_EQ(pool_.live_blocks(), 1u) << "the first block was released when the frame moved";
}

TEST_F(InputBufferTest, FrameSizeHintWithAReferencedBlock) {
  InputBuffer in(&pool_);
  std::string reply = Bytes(40, 'r');
  std::string frame = Bytes(300, 'f');
  Read(&in, reply + frame.substr(0, 20));
  Slice first = in.Take(reply.size());
  in.Settle(true, frame.size());
  EXPECT_EQ(in.unparsed(), frame.substr(0, 20));
  EXPECT_GE(in.WritableRegion().second, frame.size() - 20);
  for (size_t off = 20; off < frame.size(); off += 40) {
    Read(&in, frame.substr(off, 40));
    in.Settle(true, frame.size());
  }
  EXPECT_EQ(in.unparsed(), frame);
  EXPECT_EQ(first.view(), reply);
}

// Feeds a `frame_size` frame in `read_size` reads, settling after each with `hint`; returns the
// number of times the pending bytes moved and the bytes copied by those moves.
struct CopyCost {
  size_t moves = 0;
  size_t copied = 0;
  size_t allocations = 0;   // growths of the pool's allocated bytes
  size_t peak_bytes = 0;
};
CopyCost FeedFrame(BlockPool* pool, InputBuffer* in, const std::string& frame, size_t read_size,
                   size_t hint) {
  CopyCost cost;
  size_t allocated = pool->allocated_bytes();
  for (size_t off = 0; off < frame.size();) {
    auto [dst, room] = in->WritableRegion();
    size_t n = std::min({room, read_size, frame.size() - off});
    std::memcpy(dst, frame.data() + off, n);
    in->Commit(n);
    off += n;
    const char* before = in->unparsed().data();
    if (in->buffered() < frame.size()) in->Settle(true, hint);
    if (in->unparsed().data() != before) {
      ++cost.moves;
      cost.copied += in->buffered();
    }
    if (pool->allocated_bytes() > allocated) ++cost.allocations;
    allocated = pool->allocated_bytes();
    cost.peak_bytes = std::max(cost.peak_bytes, allocated);
  }
  return cost;
}

TEST_F(InputBufferTest, BigFrameOfUnknownSizeIsCopiedAConstantNumberOfTimesOnAverage) {
  InputBuffer in(&pool_);
  constexpr size_t kFrame = 1024 * kBlockSize;  // 64 KiB in 7-byte reads
  std::string frame = Bytes(kFrame, '0');
  in.WritableRegion();  // the first block is not a copy
  CopyCost cost = FeedFrame(&pool_, &in, frame, 7, /*hint=*/0);
  EXPECT_EQ(in.unparsed(), frame);
  EXPECT_LE(cost.copied, 2 * kFrame) << "doubling: every byte copied about twice at most";
  EXPECT_LE(cost.moves, 12u) << "log2(1024) growths, not one per read";
  EXPECT_EQ(cost.allocations, cost.moves) << "one new block per move, none per read";
  EXPECT_LE(cost.peak_bytes, 4 * kFrame);

  Slice whole = in.Take(kFrame);
  in.Settle(/*keep_when_empty=*/false);
  EXPECT_EQ(whole.view(), frame);
  whole.Reset();
  EXPECT_EQ(pool_.live_blocks(), 0u);
  EXPECT_LE(pool_.allocated_bytes(), 8 * kBlockSize) << "big blocks are not kept";
}

TEST_F(InputBufferTest, BigFrameWithHintIsCopiedOnce) {
  InputBuffer in(&pool_);
  constexpr size_t kFrame = 100 * kBlockSize;
  std::string frame = Bytes(kFrame, '0');
  in.WritableRegion();
  CopyCost cost = FeedFrame(&pool_, &in, frame, 5, kFrame);
  EXPECT_EQ(in.unparsed(), frame);
  EXPECT_EQ(cost.moves, 1u);
  EXPECT_LE(cost.copied, kBlockSize);
  EXPECT_EQ(cost.allocations, 1u);
}

TEST_F(InputBufferTest, WritableRegionMakesRoomWhenTheBlockIsFull) {
  InputBuffer in(&pool_);
  std::string full = Bytes(kBlockSize, 'a');
  Read(&in, full);  // no Settle: the safety net in WritableRegion must cope
  auto [next, room] = in.WritableRegion();
  EXPECT_GT(room, 0u);
  EXPECT_EQ(in.unparsed(), full);
  EXPECT_EQ(next, in.unparsed().data() + full.size());

  InputBuffer drained(&pool_);
  const char* first = drained.WritableRegion().first;
  Read(&drained, full);
  drained.Skip(full.size());
  auto [again, again_room] = drained.WritableRegion();
  EXPECT_EQ(again, first) << "consumed exclusive block reused";
  EXPECT_EQ(again_room, kBlockSize);
}

TEST_F(InputBufferTest, ReleaseDropsTheBufferReferenceOnly) {
  InputBuffer in(&pool_);
  Read(&in, "+OK\r\n+PARTIAL");
  Slice ok = in.Take(5);
  in.Release();
  EXPECT_EQ(in.buffered(), 0u);
  EXPECT_TRUE(in.unparsed().empty());
  EXPECT_EQ(pool_.live_blocks(), 1u);
  EXPECT_EQ(ok.view(), "+OK\r\n");
  ok.Reset();
  EXPECT_EQ(pool_.live_blocks(), 0u);
  in.Release();  // twice is harmless
  Read(&in, "+AGAIN\r\n");
  EXPECT_EQ(in.unparsed(), "+AGAIN\r\n");
}

TEST_F(InputBufferTest, DestructorReleasesTheBlock) {
  {
    InputBuffer in(&pool_);
    Read(&in, "partial");
    EXPECT_EQ(pool_.live_blocks(), 1u);
  }
  EXPECT_EQ(pool_.live_blocks(), 0u);
}

// A pipeline of frames of random sizes (smaller and larger than a block) arriving in random
// reads, framed as a parser would: complete frames are taken (some skipped), some taken slices
// are held for a while (queued writes). Settling must never change the unparsed bytes nor any
// taken slice, and every block must be returned in the end.
TEST_F(InputBufferTest, RandomPipelineNeverCorruptsTakenOrPendingBytes) {
  std::mt19937 rng(20240611);
  for (int round = 0; round < 20; ++round) {
    InputBuffer in(&pool_);
    std::vector<std::string> frames;
    std::string stream;
    for (int i = 0; i < 200; ++i) {
      size_t size = 1 + rng() % (rng() % 8 == 0 ? 5 * kBlockSize : kBlockSize / 2);
      frames.push_back(Bytes(size, static_cast<char>('A' + i % 40)));
      stream += frames.back();
    }
    std::deque<std::pair<Slice, size_t>> held;  // slice, frame index
    size_t next_frame = 0;
    size_t fed = 0;
    while (fed < stream.size()) {
      auto [dst, room] = in.WritableRegion();
      ASSERT_GT(room, 0u);
      size_t n = std::min({room, stream.size() - fed, size_t{1} + rng() % 100});
      std::memcpy(dst, stream.data() + fed, n);
      in.Commit(n);
      fed += n;
      while (next_frame < frames.size() && in.buffered() >= frames[next_frame].size()) {
        size_t size = frames[next_frame].size();
        ASSERT_EQ(in.unparsed().substr(0, size), frames[next_frame]) << "frame " << next_frame;
        if (rng() % 5 == 0) {
          in.Skip(size);
        } else {
          held.emplace_back(in.Take(size), next_frame);
        }
        ++next_frame;
      }
      while (!held.empty() && rng() % 3 != 0) {
        ASSERT_EQ(held.front().first.view(), frames[held.front().second]);
        held.pop_front();
      }
      std::string pending(in.unparsed());
      size_t hint = next_frame < frames.size() && rng() % 2 == 0 ? frames[next_frame].size() : 0;
      in.Settle(rng() % 4 != 0, hint);
      ASSERT_EQ(in.unparsed(), pending) << "round " << round << " fed " << fed;
    }
    ASSERT_EQ(next_frame, frames.size());
    for (const auto& [slice, index] : held) ASSERT_EQ(slice.view(), frames[index]) << "frame " << index;
    held.clear();
    in.Release();
    EXPECT_EQ(pool_.live_blocks(), 0u);
  }
}

}  // namespace
}  // namespace slotpilot::proxy
