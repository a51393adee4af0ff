// Micro-benchmarks of slotpilot_protocol: the per-request work the proxy does on its data path.
//
// Request path: what ClientSession + Dispatcher do for every request before routing it
// (RequestParser framing, argv views, ResolveCommand, GetKeyPositions, KeyHashSlot), over one big
// buffer of pipelined commands. Reply path: ReplyFramer, fed the way Upstream feeds it. Plus the
// slot hash and the MOVED handling. Commands and exact numbers: bench/README.md, bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/types/span.h"
#include "protocol/command_table.h"
#include "protocol/errors.h"
#include "protocol/reply_parser.h"
#include "protocol/request_parser.h"
#include "protocol/slot.h"

namespace slotpilot::protocol {
namespace {

constexpr int kPipelinedCommands = 1000;  // commands in one request buffer

// A 16-byte key: "key:" + 12 digits, distinct per i so slots spread like real traffic.
std::string Key16(int i) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "key:%012d", i);
  return std::string(buf, 16);
}

const std::string& Value32() {
  static const std::string value(32, 'v');
  return value;
}

// kPipelinedCommands `SET <16-byte key> <32-byte value>` in RESP multibulk form.
std::string MultibulkSetBuffer() {
  std::string out;
  for (int i = 0; i < kPipelinedCommands; ++i) {
    out += "*3\r\n$3\r\nSET\r\n$16\r\n" + Key16(i) + "\r\n$32\r\n" + Value32() + "\r\n";
  }
  return out;
}

// The same commands as inline (telnet-style) lines.
std::string InlineSetBuffer() {
  std::string out;
  for (int i = 0; i < kPipelinedCommands; ++i) out += "SET " + Key16(i) + " " + Value32() + "\r\n";
  return out;
}

// The argument views ClientSession builds for Dispatch().
using Argv = absl::InlinedVector<std::string_view, 16>;

void FillArgv(const RequestParser& parser, std::string_view request, Argv* argv) {
  argv->clear();
  for (size_t i = 0; i < parser.args().size(); ++i) argv->push_back(parser.Arg(request, i));
}

// Dispatcher::ComputeSlot: the slot all keys share, or -1 (CROSSSLOT, no keys, bad command).
int SlotOf(absl::Span<const std::string_view> argv, KeyPositions* keys) {
  absl::StatusOr<const CommandInfo*> cmd = ResolveCommand(argv);
  if (!cmd.ok()) return -1;
  if (!GetKeyPositions(**cmd, argv, keys, /*include_not_keys=*/true).ok()) return -1;
  if (keys->empty()) return -1;
  const uint16_t slot = KeyHashSlot(argv[(*keys)[0]]);
  for (size_t i = 1; i < keys->size(); ++i) {
    if (KeyHashSlot(argv[(*keys)[i]]) != slot) return -1;
  }
  return slot;
}

// Frames every request of `buffer` and runs `per_request` on it; returns the requests framed.
template <typename PerRequest>
int64_t ForEachRequest(RequestParser* parser, std::string_view buffer, PerRequest per_request) {
  int64_t framed = 0;
  while (!buffer.empty()) {
    const ParseResult res = parser->Parse(buffer);
    if (res.status != ParseStatus::kComplete) break;
    per_request(buffer.substr(0, res.consumed));
    buffer.remove_prefix(res.consumed);
    ++framed;
  }
  return framed;
}

// Full request path, as the proxy runs it: framing + argv + ResolveCommand + GetKeyPositions +
// KeyHashSlot. The headline number (target >= 10 M commands/s on one core).
void RequestPath(benchmark::State& state, const std::string& buffer) {
  RequestParser parser;
  Argv argv;
  KeyPositions keys;
  int64_t commands = 0;
  for (auto _ : state) {
    commands += ForEachRequest(&parser, buffer, [&](std::string_view request) {
      FillArgv(parser, request, &argv);
      int slot = SlotOf(argv, &keys);
      benchmark::DoNotOptimize(slot);
    });
  }
  if (commands != state.iterations() * kPipelinedCommands) state.SkipWithError("parse failed");
  state.SetItemsProcessed(commands);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buffer.size()));
}

void BM_RequestPath_Multibulk(benchmark::State& state) { RequestPath(state, MultibulkSetBuffer()); }
BENCHMARK(BM_RequestPath_Multibulk);

void BM_RequestPath_Inline(benchmark::State& state) { RequestPath(state, InlineSetBuffer()); }
BENCHMARK(BM_RequestPath_Inline);

// Breakdown of the request path, to see where the time goes.
void BM_RequestStage_FramingOnly(benchmark::State& state) {
  const std::string buffer = MultibulkSetBuffer();
  RequestParser parser;
  int64_t commands = 0;
  for (auto _ : state) {
    commands += ForEachRequest(&parser, buffer, [&](std::string_view request) {
      benchmark::DoNotOptimize(parser.args().data());
    });
  }
  state.SetItemsProcessed(commands);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buffer.size()));
}
BENCHMARK(BM_RequestStage_FramingOnly);

void BM_RequestStage_FramingArgv(benchmark::State& state) {
  const std::string buffer = MultibulkSetBuffer();
  RequestParser parser;
  Argv argv;
  int64_t commands = 0;
  for (auto _ : state) {
    commands += ForEachRequest(&parser, buffer, [&](std::string_view request) {
      FillArgv(parser, request, &argv);
      benchmark::DoNotOptimize(argv.data());
    });
  }
  state.SetItemsProcessed(commands);
}
BENCHMARK(BM_RequestStage_FramingArgv);

// Framing + LookupCommand + the key at argv[1] + slot: the lower bound without ResolveCommand's
// StatusOr and GetKeyPositions' key-spec walk.
void BM_RequestStage_FramingLookupSlot(benchmark::State& state) {
  const std::string buffer = MultibulkSetBuffer();
  RequestParser parser;
  Argv argv;
  int64_t commands = 0;
  for (auto _ : state) {
    commands += ForEachRequest(&parser, buffer, [&](std::string_view request) {
      FillArgv(parser, request, &argv);
      const CommandInfo* cmd = LookupCommand(argv[0]);
      benchmark::DoNotOptimize(cmd);
      uint16_t slot = KeyHashSlot(argv[1]);
      benchmark::DoNotOptimize(slot);
    });
  }
  state.SetItemsProcessed(commands);
}
BENCHMARK(BM_RequestStage_FramingLookupSlot);

void BM_ResolveCommand_Set(benchmark::State& state) {
  const std::string key = Key16(1);
  const std::string_view argv[] = {"SET", key, Value32()};
  for (auto _ : state) {
    absl::StatusOr<const CommandInfo*> cmd = ResolveCommand(argv);
    benchmark::DoNotOptimize(cmd);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResolveCommand_Set);

void BM_LookupCommand_Set(benchmark::State& state) {
  std::string_view name = "SET";
  for (auto _ : state) {
    benchmark::DoNotOptimize(name);
    const CommandInfo* cmd = LookupCommand(name);
    benchmark::DoNotOptimize(cmd);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupCommand_Set);

void BM_GetKeyPositions_Set(benchmark::State& state) {
  const std::string key = Key16(1);
  const std::string_view argv[] = {"SET", key, Value32()};
  const CommandInfo* cmd = LookupCommand("set");
  KeyPositions keys;
  for (auto _ : state) {
    absl::Status st = GetKeyPositions(*cmd, argv, &keys, /*include_not_keys=*/true);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(keys.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetKeyPositions_Set);

// ---- Reply framing -------------------------------------------------------------------------
// Each iteration feeds the bytes once (as Upstream does after a read) and takes frames until
// kNeedMore. The framer retains 1 MiB of reader buffer, as Upstream configures it.

std::string BulkReply(size_t size) {
  return "$" + std::to_string(size) + "\r\n" + std::string(size, 'x') + "\r\n";
}

void FrameReplies(benchmark::State& state, const std::string& bytes, int64_t replies_per_feed) {
  ReplyFramer framer(/*retain_buffer_bytes=*/1u << 20);
  int64_t frames = 0;
  for (auto _ : state) {
    if (!framer.Feed(bytes.data(), bytes.size())) {
      state.SkipWithError("feed failed");
      break;
    }
    ReplyFrame frame;
    while (framer.Next(&frame) == FrameStatus::kFrame) {
      benchmark::DoNotOptimize(frame.length);
      ++frames;
    }
  }
  if (frames != state.iterations() * replies_per_feed) state.SkipWithError("framing failed");
  state.SetItemsProcessed(frames);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}

void BM_ReplyFramer_Ok(benchmark::State& state) { FrameReplies(state, "+OK\r\n", 1); }
BENCHMARK(BM_ReplyFramer_Ok);

void BM_ReplyFramer_Bulk3(benchmark::State& state) { FrameReplies(state, "$3\r\nbar\r\n", 1); }
BENCHMARK(BM_ReplyFramer_Bulk3);

void BM_ReplyFramer_Bulk1KiB(benchmark::State& state) { FrameReplies(state, BulkReply(1024), 1); }
BENCHMARK(BM_ReplyFramer_Bulk1KiB);

void BM_ReplyFramer_Bulk1MiB(benchmark::State& state) {
  FrameReplies(state, BulkReply(1u << 20), 1);
}
BENCHMARK(BM_ReplyFramer_Bulk1MiB);

// A 1 MiB bulk arriving in 64 KiB reads (libuv's read size): what Upstream actually sees.
void BM_ReplyFramer_Bulk1MiB_64KiBReads(benchmark::State& state) {
  const std::string bytes = BulkReply(1u << 20);
  constexpr size_t kRead = 64 * 1024;
  ReplyFramer framer(/*retain_buffer_bytes=*/1u << 20);
  int64_t frames = 0;
  for (auto _ : state) {
    for (size_t off = 0; off < bytes.size(); off += kRead) {
      const size_t n = std::min(kRead, bytes.size() - off);
      if (!framer.Feed(bytes.data() + off, n)) state.SkipWithError("feed failed");
      ReplyFrame frame;
      while (framer.Next(&frame) == FrameStatus::kFrame) ++frames;
    }
  }
  if (frames != state.iterations()) state.SkipWithError("framing failed");
  state.SetItemsProcessed(frames);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ReplyFramer_Bulk1MiB_64KiBReads);

// 100 pipelined small replies in one read: +OK, $3 bar, :1, $-1 in turn.
void BM_ReplyFramer_Pipelined100(benchmark::State& state) {
  const char* const kReplies[] = {"+OK\r\n", "$3\r\nbar\r\n", ":1\r\n", "$-1\r\n"};
  std::string bytes;
  for (int i = 0; i < 100; ++i) bytes += kReplies[i % 4];
  FrameReplies(state, bytes, 100);
}
BENCHMARK(BM_ReplyFramer_Pipelined100);

// ---- Slots -----------------------------------------------------------------------------------

void BM_KeyHashSlot_16B(benchmark::State& state) {
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i) keys.push_back(Key16(i));
  size_t i = 0;
  for (auto _ : state) {
    uint16_t slot = KeyHashSlot(keys[i++ & 1023]);
    benchmark::DoNotOptimize(slot);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 16);
}
BENCHMARK(BM_KeyHashSlot_16B);

// "user:{123456}:profile"-style keys: only the tag is hashed.
void BM_KeyHashSlot_HashTag(benchmark::State& state) {
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "user:{%06d}:profile", i);
    keys.emplace_back(buf);
  }
  size_t i = 0;
  for (auto _ : state) {
    uint16_t slot = KeyHashSlot(keys[i++ & 1023]);
    benchmark::DoNotOptimize(slot);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KeyHashSlot_HashTag);

void BM_Crc16(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'k');
  for (auto _ : state) {
    benchmark::DoNotOptimize(data.data());
    uint16_t crc = Crc16(data);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Crc16)->Arg(16)->Arg(1024)->Arg(64 * 1024);

// ---- Errors ----------------------------------------------------------------------------------

void BM_ClassifyAndParseMoved(benchmark::State& state) {
  std::string_view text = "MOVED 3999 127.0.0.1:6381";
  for (auto _ : state) {
    benchmark::DoNotOptimize(text);
    ErrorKind kind = ClassifyError(text);
    benchmark::DoNotOptimize(kind);
    absl::StatusOr<Redirect> r = ParseRedirect(text);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClassifyAndParseMoved);

}  // namespace
}  // namespace slotpilot::protocol
