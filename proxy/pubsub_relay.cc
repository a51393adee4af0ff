#include "proxy/pubsub_relay.h"

#include <vector>

#include "protocol/resp.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// The subscription count in a (p|s)(un)subscribe reply, or -1 for any other frame (a message).
int64_t SubscriptionCount(const protocol::ReplyFrame& frame, std::string_view bytes) {
  if (frame.type != protocol::ReplyType::kArray || frame.elements != 3) return -1;
  std::vector<std::string_view> parts;
  if (!protocol::SplitArrayElements(bytes, &parts).ok() || parts.size() != 3) return -1;
  auto kind = protocol::DecodeReply(parts[0]);
  if (!kind.ok()) return -1;
  static constexpr std::string_view kKinds[] = {"subscribe",  "unsubscribe",  "psubscribe",
                                                "punsubscribe", "ssubscribe", "sunsubscribe"};
  bool is_subscription_reply = false;
  for (std::string_view k : kKinds) is_subscription_reply |= EqualsIgnoreCase(kind->str, k);
  if (!is_subscription_reply) return -1;
  return protocol::IntegerReply(parts[2]).value_or(-1);
}

}  // namespace

PubSubRelay::PubSubRelay(Worker* worker, ClientSession* session)
    : worker_(worker), session_(session) {}

PubSubRelay::~PubSubRelay() { Reset(); }

bool PubSubRelay::subscribed() const {
  auto active = [](const Conn& c) {
    return c.upstream != nullptr && (c.subscriptions > 0 || c.awaiting_reply);
  };
  if (active(global_)) return true;
  for (const auto& [node, conn] : shards_) {
    if (active(conn)) return true;
  }
  return false;
}

PubSubRelay::Conn* PubSubRelay::Connect(Conn* conn, uint16_t node) {
  if (conn->upstream == nullptr) {
    const RoutingTable::Node& n = worker_->routing().node(node);
    conn->upstream = std::make_unique<Upstream>(worker_, node, n.host, n.port,
                                                Upstream::Role::kPubSub, this);
    conn->subscriptions = 0;
  }
  return conn;
}

void PubSubRelay::SendGlobal(Request* r) {
  if (global_.upstream == nullptr) {
    const auto& masters = worker_->routing().masters();
    if (masters.empty()) {
      return worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
    }
    global_node_ = masters.front();
    Connect(&global_, global_node_);
  }
  global_.awaiting_reply = true;
  global_.upstream->Send(r);
}

void PubSubRelay::SendShard(Request* r, uint16_t slot) {
  uint16_t node = worker_->routing().NodeForSlot(slot);
  if (node == RoutingTable::kNoNode) return worker_->CompleteWithError(r, "CLUSTERDOWN Hash slot not served");
  Conn* conn = Connect(&shards_[node], node);
  conn->awaiting_reply = true;
  conn->upstream->Send(r);
}

void PubSubRelay::SendAllShards(Request* r, absl::Span<const std::string_view> argv) {
  if (shards_.empty()) {  // what Redis answers a client with no shard subscriptions
    std::string reply;
    protocol::AppendArrayHeader(&reply, 3);
    protocol::AppendBulk(&reply, ToLower(argv[0]));
    protocol::AppendNil(&reply);
    protocol::AppendInteger(&reply, 0);
    return worker_->Complete(r, worker_->arena().Copy(reply), false);
  }
  bool first = true;
  for (auto& [node, conn] : shards_) {
    conn.awaiting_reply = true;
    if (first) {
      conn.upstream->Send(r);
      first = false;
      continue;
    }
    Request* copy = worker_->NewRequest(nullptr);  // the client already has its place in order
    copy->bytes = r->bytes;
    conn.upstream->Send(copy);
  }
}

void PubSubRelay::OnPush(Upstream* from, const protocol::ReplyFrame& frame, Slice bytes) {
  Conn* conn = from == global_.upstream.get() ? &global_ : nullptr;
  for (auto& [node, c] : shards_) {
    if (c.upstream.get() == from) conn = &c;
  }
  if (conn == nullptr) return;  // a retired connection's last words
  conn->awaiting_reply = false;
  int64_t count = SubscriptionCount(frame, bytes.view());
  if (count >= 0) conn->subscriptions = count;
  if (!session_->closing()) {
    Request* push = worker_->NewRequest(session_);
    session_->Enqueue(push);
    worker_->Complete(push, std::move(bytes), frame.type == protocol::ReplyType::kError);
  }
  MaybeLeaveSubscribedMode();
}

void PubSubRelay::MaybeLeaveSubscribedMode() {
  auto idle = [](const Conn& c) { return c.subscriptions == 0 && !c.awaiting_reply; };
  if (global_.upstream != nullptr && idle(global_)) worker_->RetireUpstream(std::move(global_.upstream));
  for (auto it = shards_.begin(); it != shards_.end();) {
    if (idle(it->second)) {
      worker_->RetireUpstream(std::move(it->second.upstream));
      it = shards_.erase(it);
    } else {
      ++it;
    }
  }
}

void PubSubRelay::OnPushConnectionLost(Upstream*, std::string_view reason) {
  // Silently missing messages would be worse than a reconnect: make the application notice.
  session_->Close(StrCat("subscribed connection lost: ", reason));
}

void PubSubRelay::Reset() {
  if (global_.upstream != nullptr) worker_->RetireUpstream(std::move(global_.upstream));
  for (auto& [node, conn] : shards_) {
    if (conn.upstream != nullptr) worker_->RetireUpstream(std::move(conn.upstream));
  }
  shards_.clear();
}

}  // namespace slotpilot::proxy
