#include "proxy/pubsub_relay.h"

#include <algorithm>
#include <utility>

#include "protocol/resp.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// The first element of an array frame, lower-cased ("message", "subscribe", ...), and the raw
// elements; empty for any other frame.
std::string FrameKind(const protocol::ReplyFrame& frame, std::string_view bytes,
                      std::vector<std::string_view>* parts) {
  parts->clear();
  if (frame.type != protocol::ReplyType::kArray || frame.elements < 1) return {};
  if (!protocol::SplitArrayElements(bytes, parts).ok() || parts->empty()) return {};
  auto kind = protocol::DecodeReply((*parts)[0]);
  return kind.ok() ? ToLower(kind->str) : std::string();
}

bool IsMessage(std::string_view kind) {
  return kind == "message" || kind == "pmessage" || kind == "smessage";
}

// [kind, channel, count] with `count` in place of what the node said.
void AppendWithCount(std::string* out, const std::vector<std::string_view>& parts, int64_t count) {
  protocol::AppendArrayHeader(out, 3);
  out->append(parts[0]);
  out->append(parts[1]);
  protocol::AppendInteger(out, count);
}

// What Redis answers an unsubscribe that has nothing to do: one frame per channel named, or one
// with a nil channel.
std::string NothingToUnsubscribe(absl::Span<const std::string_view> argv, int64_t count) {
  std::string out;
  std::string kind = ToLower(argv[0]);
  auto frame = [&](const std::string_view* channel) {
    protocol::AppendArrayHeader(&out, 3);
    protocol::AppendBulk(&out, kind);
    if (channel != nullptr) {
      protocol::AppendBulk(&out, *channel);
    } else {
      protocol::AppendNil(&out);
    }
    protocol::AppendInteger(&out, count);
  };
  if (argv.size() == 1) frame(nullptr);
  for (size_t i = 1; i < argv.size(); ++i) frame(&argv[i]);
  return out;
}

}  // namespace

PubSubRelay::PubSubRelay(Worker* worker, ClientSession* session)
    : worker_(worker), session_(session) {}

PubSubRelay::~PubSubRelay() { Drop(); }

bool PubSubRelay::subscribed() const {
  return !channels_.empty() || !patterns_.empty() || !shard_channels_.empty();
}

PubSubRelay::Conn* PubSubRelay::Connect(Conn* conn, uint16_t node) {
  if (conn->upstream == nullptr) {
    const RoutingTable::Node& n = worker_->routing().node(node);
    conn->upstream = std::make_unique<Upstream>(worker_, node, n.host, n.port,
                                                Upstream::Role::kPubSub, this);
  }
  return conn;
}

PubSubRelay::Conn* PubSubRelay::ConnOf(const Upstream* upstream) {
  if (upstream == global_.upstream.get()) return &global_;
  for (auto& [node, conn] : shards_) {
    if (conn.upstream.get() == upstream) return &conn;
  }
  for (Conn& conn : draining_) {
    if (conn.upstream.get() == upstream) return &conn;
  }
  return nullptr;  // a retired connection's last words
}

PubSubRelay::AnswerList::iterator PubSubRelay::Hold(Request* r) {
  worker_->Retain(r);
  worker_->TrackDeadline(r);  // a silent node must not stall the client's replies for ever
  answers_.emplace_back();
  answers_.back().request = r;
  return std::prev(answers_.end());
}

bool PubSubRelay::Expect(Conn* conn, std::string_view command, AnswerList::iterator answer,
                         int64_t frames) {
  absl::Status sent = conn->upstream->SendSubscriberCommand(command);
  if (!sent.ok()) {
    answer->reply.clear();
    protocol::AppendError(&answer->reply, std::string_view(sent.message().data(), sent.message().size()));
    answer->is_error = true;
    return false;
  }
  conn->expected.push_back(Expectation{answer, frames});
  ++answer->parts_left;
  return true;
}

void PubSubRelay::Global(absl::Span<const std::string_view> argv, Request* r) {
  std::string kind = ToLower(argv[0]);
  if (kind == "ping") {
    if (argv.size() > 2) {
      return worker_->CompleteWithError(r, "ERR wrong number of arguments for 'ping' command");
    }
    std::string pong;
    protocol::AppendArrayHeader(&pong, 2);
    protocol::AppendBulk(&pong, "pong");
    protocol::AppendBulk(&pong, argv.size() > 1 ? argv[1] : std::string_view());
    return Reply(r, pong, false);
  }
  const bool subscribe = kind == "subscribe" || kind == "psubscribe";
  auto& names = (kind[0] == 'p') ? patterns_ : channels_;
  if (!subscribe && global_.upstream == nullptr) {
    return Reply(r, NothingToUnsubscribe(argv, static_cast<int64_t>(channels_.size() + patterns_.size())), false);
  }
  int64_t frames = static_cast<int64_t>(argv.size()) - 1;
  std::vector<std::string_view> added;
  if (subscribe) {
    for (size_t i = 1; i < argv.size(); ++i) {
      if (names.emplace(argv[i]).second) added.push_back(argv[i]);
    }
  } else if (argv.size() == 1) {
    frames = std::max<int64_t>(1, static_cast<int64_t>(names.size()));
    names.clear();
  } else {
    for (size_t i = 1; i < argv.size(); ++i) {
      if (auto it = names.find(argv[i]); it != names.end()) names.erase(it);
    }
  }
  if (global_.upstream == nullptr) {
    const auto& masters = worker_->routing().masters();
    if (masters.empty()) {
      for (std::string_view name : added) names.erase(names.find(name));
      return worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
    }
    Connect(&global_, masters.front());
  }
  auto answer = Hold(r);
  if (!Expect(&global_, r->bytes.view(), answer, frames)) {
    for (std::string_view name : added) names.erase(names.find(name));
  }
  FinishIfComplete(answer);
  RetireIdleConnections();
}

void PubSubRelay::Shard(absl::Span<const std::string_view> argv, uint16_t slot, Request* r) {
  const bool subscribe = EqualsIgnoreCase(argv[0], "ssubscribe");
  uint16_t node = RoutingTable::kNoNode;
  if (subscribe) {
    node = worker_->routing().NodeForSlot(slot);
    if (node == RoutingTable::kNoNode) return worker_->CompleteWithError(r, "CLUSTERDOWN Hash slot not served");
  } else {
    for (size_t i = 1; i < argv.size() && node == RoutingTable::kNoNode; ++i) {
      auto it = shard_channels_.find(argv[i]);
      if (it != shard_channels_.end()) node = it->second;
    }
    if (node == RoutingTable::kNoNode || shards_.count(node) == 0) {
      return Reply(r, NothingToUnsubscribe(argv, static_cast<int64_t>(shard_channels_.size())), false);
    }
  }
  auto answer = Hold(r);
  std::vector<std::string_view> added;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (subscribe) {
      if (shard_channels_.emplace(argv[i], node).second) added.push_back(argv[i]);
    } else if (auto it = shard_channels_.find(argv[i]); it != shard_channels_.end()) {
      shard_channels_.erase(it);
    }
    answer->counts.push_back(static_cast<int64_t>(shard_channels_.size()));
  }
  Conn* conn = Connect(&shards_[node], node);
  if (!Expect(conn, r->bytes.view(), answer, static_cast<int64_t>(argv.size()) - 1)) {
    for (std::string_view name : added) shard_channels_.erase(shard_channels_.find(name));
  }
  FinishIfComplete(answer);
  RetireIdleConnections();
}

void PubSubRelay::UnsubscribeAllShards(Request* r) {
  if (shard_channels_.empty()) {
    std::string_view argv[] = {"sunsubscribe"};
    return Reply(r, NothingToUnsubscribe(argv, 0), false);
  }
  std::map<uint16_t, int64_t> per_node;
  for (const auto& [channel, node] : shard_channels_) ++per_node[node];
  auto answer = Hold(r);
  for (int64_t left = static_cast<int64_t>(shard_channels_.size()) - 1; left >= 0; --left) {
    answer->counts.push_back(left);  // each frame names one channel, in the node's own order
  }
  shard_channels_.clear();
  for (const auto& [node, frames] : per_node) {
    Expect(Connect(&shards_[node], node), r->bytes.view(), answer, frames);
  }
  FinishIfComplete(answer);
  RetireIdleConnections();
}

void PubSubRelay::OnPush(Upstream* from, const protocol::ReplyFrame& frame, Slice bytes) {
  Conn* conn = ConnOf(from);
  if (conn == nullptr) return;
  std::vector<std::string_view> parts;
  std::string kind = FrameKind(frame, bytes.view(), &parts);
  if (!IsMessage(kind) && !conn->expected.empty()) {
    AddFrame(conn, frame, std::move(bytes));
  } else if (conn->draining) {
    // RESET dropped its subscriptions: what it still pushes is not for the client
  } else if (kind == "sunsubscribe" && parts.size() == 3 && conn != &global_) {
    // Unasked: the node no longer serves the channel's slot (Redis 7 drops shard subscribers
    // when a slot moves). Forget it and report the client's own count.
    auto channel = protocol::DecodeReply(parts[1]);
    if (channel.ok()) shard_channels_.erase(channel->str);
    std::string out;
    AppendWithCount(&out, parts, static_cast<int64_t>(shard_channels_.size()));
    Relay(worker_->arena().Copy(out), false);
  } else {
    Relay(std::move(bytes), frame.type == protocol::ReplyType::kError);
  }
  RetireIdleConnections();
}

void PubSubRelay::AddFrame(Conn* conn, const protocol::ReplyFrame& frame, Slice bytes) {
  Expectation& owed = conn->expected.front();
  Answer& answer = *owed.answer;
  if (frame.type == protocol::ReplyType::kError) {
    // Redis refuses a whole command with one error (NOPERM, MOVED, CROSSSLOT).
    if (!answer.is_error) answer.reply.assign(bytes.view());
    answer.is_error = true;
    owed.frames = 0;
  } else {
    --owed.frames;
    std::vector<std::string_view> parts;
    bool rewrite = answer.next_count < answer.counts.size() &&
                   protocol::SplitArrayElements(bytes.view(), &parts).ok() && parts.size() == 3;
    if (answer.is_error) {
      // the error stands for the whole command
    } else if (rewrite) {
      AppendWithCount(&answer.reply, parts, answer.counts[answer.next_count++]);
    } else {
      answer.reply.append(bytes.view());
    }
  }
  if (owed.frames > 0) return;
  AnswerList::iterator done = owed.answer;
  conn->expected.pop_front();
  --done->parts_left;
  FinishIfComplete(done);
}

void PubSubRelay::FinishIfComplete(AnswerList::iterator answer) {
  if (answer->parts_left > 0) return;
  Request* r = answer->request;
  if (!r->answered()) {  // else the deadline answered it first
    Reply(r, answer->reply, answer->is_error);
  }
  answers_.erase(answer);
  worker_->Release(r);
}

void PubSubRelay::Reply(Request* r, const std::string& bytes, bool is_error) {
  worker_->Complete(r, worker_->arena().Copy(bytes), is_error);
}

void PubSubRelay::Relay(Slice bytes, bool is_error) {
  if (session_->closing()) return;
  Request* push = worker_->NewRequest(session_);
  session_->Enqueue(push);
  worker_->Complete(push, std::move(bytes), is_error);
}

bool PubSubRelay::ShardNodeInUse(uint16_t node) const {
  for (const auto& [channel, n] : shard_channels_) {
    if (n == node) return true;
  }
  return false;
}

void PubSubRelay::RetireIdleConnections() {
  if (global_.upstream != nullptr && global_.expected.empty() && channels_.empty() &&
      patterns_.empty()) {
    worker_->RetireUpstream(std::move(global_.upstream));
  }
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (it->expected.empty()) {
      worker_->RetireUpstream(std::move(it->upstream));
      it = draining_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = shards_.begin(); it != shards_.end();) {
    if (it->second.expected.empty() && !ShardNodeInUse(it->first)) {
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
  auto drain = [this](Conn& conn) {
    if (conn.upstream == nullptr) return;
    if (conn.expected.empty()) return worker_->RetireUpstream(std::move(conn.upstream));
    conn.draining = true;
    draining_.push_back(std::move(conn));
  };
  drain(global_);
  global_ = Conn();
  for (auto& [node, conn] : shards_) drain(conn);
  shards_.clear();
  channels_.clear();
  patterns_.clear();
  shard_channels_.clear();
}

void PubSubRelay::Drop() {
  worker_->RetireUpstream(std::move(global_.upstream));
  global_.expected.clear();
  for (auto& [node, conn] : shards_) worker_->RetireUpstream(std::move(conn.upstream));
  shards_.clear();
  for (Conn& conn : draining_) worker_->RetireUpstream(std::move(conn.upstream));
  draining_.clear();
  channels_.clear();
  patterns_.clear();
  shard_channels_.clear();
  while (!answers_.empty()) {
    Request* r = answers_.front().request;
    answers_.pop_front();
    if (!r->answered()) {
      worker_->CompleteWithError(r, "ERR slotpilot: subscriptions dropped before the server answered");
    }
    worker_->Release(r);
  }
}

}  // namespace slotpilot::proxy
