// The Dispatcher's commands that need a connection of the client's own: transactions, subscribed
// mode (pub/sub) and blocking commands. Shared pipelined connections are never blocked.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "protocol/slot.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/dispatcher.h"
#include "proxy/pubsub_relay.h"
#include "proxy/transaction.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

using protocol::CommandInfo;

std::optional<double> ParseSeconds(std::string_view text) {
  std::string copy(text);
  char* end = nullptr;
  double v = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v;
}

// How long a blocking command may block, in seconds (0 = for ever); nullopt when this invocation
// does not block (XREAD without BLOCK). A malformed timeout counts as not blocking: the node
// answers it with its own error at once.
std::optional<double> BlockingSeconds(const CommandInfo& cmd, absl::Span<const std::string_view> argv) {
  std::string_view name = cmd.full_name;
  if (name == "blmpop" || name == "bzmpop") return ParseSeconds(argv[1]);
  if (name == "wait") {
    auto ms = ParseSeconds(argv[2]);
    return ms ? std::optional<double>(*ms / 1000.0) : std::nullopt;
  }
  if (name == "xread" || name == "xreadgroup") {
    for (size_t i = 1; i + 1 < argv.size(); ++i) {
      if (EqualsIgnoreCase(argv[i], "STREAMS")) break;
      if (EqualsIgnoreCase(argv[i], "BLOCK")) {
        auto ms = ParseSeconds(argv[i + 1]);
        return ms ? std::optional<double>(*ms / 1000.0) : std::nullopt;
      }
    }
    return std::nullopt;
  }
  return ParseSeconds(argv.back());  // BLPOP, BRPOP, BZPOPMIN/MAX, BRPOPLPUSH, BLMOVE
}

}  // namespace

// Transactions and subscribed mode. Returns false for other local commands.
bool Dispatcher::RunTransactionOrPubSub(ClientSession* session, LocalCommand command,
                                        const CommandInfo& cmd,
                                        absl::Span<const std::string_view> argv, Slice raw,
                                        Request* r) {
  switch (command) {
    case LocalCommand::kMulti:
      session->transaction().Multi(r);
      return true;
    case LocalCommand::kExec:
      session->transaction().Exec(r);
      return true;
    case LocalCommand::kDiscard:
      session->transaction().Discard(r);
      return true;
    case LocalCommand::kWatch:
      session->transaction().Watch(argv, cmd, std::move(raw), r);
      return true;
    case LocalCommand::kUnwatch:
      session->transaction().Unwatch(r);
      return true;
    case LocalCommand::kPing:
      if (!session->subscribed()) return false;  // subscribed mode answers ["pong", msg]
      session->pubsub().Global(argv, r);
      return true;
    case LocalCommand::kSubscribe:
      r->bytes = Encoded(argv, std::move(raw));
      session->pubsub().Global(argv, r);
      return true;
    case LocalCommand::kShardSubscribe:
    case LocalCommand::kShardUnsubscribe:
      r->bytes = Encoded(argv, std::move(raw));
      if (command == LocalCommand::kShardUnsubscribe && argv.size() == 1) {
        session->pubsub().UnsubscribeAllShards(r);
        return true;
      }
      if (!ComputeSlot(cmd, argv, r)) return true;  // CROSSSLOT answered
      session->pubsub().Shard(argv, r->slot, r);
      return true;
    default:
      return false;
  }
}

void Dispatcher::Blocking(ClientSession* session, const CommandInfo& cmd,
                          absl::Span<const std::string_view> argv, Slice raw, Request* r) {
  std::optional<double> seconds = BlockingSeconds(cmd, argv);
  if (cmd.full_name == "wait") {
    // Asked where the client last wrote. A dedicated connection carries none of the client's
    // writes, so WAIT here reports the replicas in sync with the node (README: differences).
    int32_t node = session->last_write_node;
    if (node < 0) {
      const auto& masters = worker_->routing().masters();
      if (masters.empty()) return worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
      node = masters.front();
    }
    r->target_node = node;
  } else if (!ComputeSlot(cmd, argv, r)) {
    return;
  }
  r->bytes = Encoded(argv, std::move(raw));
  if (!seconds.has_value()) {  // does not block this time: an ordinary command
    worker_->TrackDeadline(r);
    return worker_->follower().router().Route(r);
  }
  r->blocking = true;
  worker_->stats().blocked_clients.Add(1);
  session->row().SetFlag(ClientRow::kBlocked, true);  // cleared by ReleaseIdleDedicated
  if (*seconds > 0) {
    double limit_ms = *seconds * 1000.0 + static_cast<double>(worker_->options().request_timeout_ms);
    r->deadline_ms = r->arrival_ms + static_cast<uint64_t>(std::min(limit_ms, 1e15));
    worker_->TrackDeadline(r);
  } else {
    r->deadline_ms = std::numeric_limits<uint64_t>::max();  // blocks for ever, like Redis
  }
  worker_->follower().router().Route(r);
}

}  // namespace slotpilot::proxy
