// Pub/Sub for one client (RESP2 subscribed mode). SUBSCRIBE / PSUBSCRIBE go to one dedicated
// connection to a master (a cluster forwards PUBLISH to every node); SSUBSCRIBE goes to a
// dedicated connection to the node serving the shard channel's slot.
//
// The client must see what one Redis would answer, in the order it asked, so:
//  - Subscribed mode follows the commands, not the replies: the channels, patterns and shard
//    channels are tracked when a command is dispatched, exactly as Redis updates them while it
//    runs commands in order. `SUBSCRIBE x`, `UNSUBSCRIBE x`, `GET k` pipelined is a GET in normal
//    mode, as on Redis.
//  - Each command is held until its connection(s) sent every frame that answers it (one per
//    channel, or one error), then answered in its place in the client's reply order. Messages
//    go out as they arrive, between answers.
//  - Shard subscriptions span nodes, so each node counts only its own; the counts in
//    ssubscribe / sunsubscribe frames are rewritten to the client's total, computed at dispatch.
//  - PING while subscribed is answered here (["pong", msg]), as Redis does in RESP2.
// If a subscribed connection drops, the client connection is closed, so the application notices
// and subscribes again rather than silently missing messages.
// Loop thread only; owned by its ClientSession.
#ifndef SLOTPILOT_PROXY_PUBSUB_RELAY_H_
#define SLOTPILOT_PROXY_PUBSUB_RELAY_H_

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "proxy/request.h"
#include "proxy/upstream.h"

namespace slotpilot::proxy {

class ClientSession;
class Worker;

class PubSubRelay : public PushSink {
 public:
  PubSubRelay(Worker* worker, ClientSession* session);
  ~PubSubRelay() override;

  // True while the client is in subscribed mode: it has a channel, pattern or shard channel.
  bool subscribed() const;

  // SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE, and PING while subscribed.
  void Global(absl::Span<const std::string_view> argv, Request* r);
  // SSUBSCRIBE / SUNSUBSCRIBE with channels, all in `slot` (the caller checked CROSSSLOT).
  void Shard(absl::Span<const std::string_view> argv, uint16_t slot, Request* r);
  // SUNSUBSCRIBE without channels: every shard connection.
  void UnsubscribeAllShards(Request* r);
  // RESET: drops every subscription; commands sent before it still get their answers, then
  // their connections go.
  void Reset();
  // The client is gone: drops everything at once.
  void Drop();

  void OnPush(Upstream* from, const protocol::ReplyFrame& frame, Slice bytes) override;
  void OnPushConnectionLost(Upstream* from, std::string_view reason) override;

 private:
  // One client command waiting for its frames, possibly from several connections.
  struct Answer {
    Request* request = nullptr;
    std::string reply;            // the frames so far
    std::vector<int64_t> counts;  // shard commands: the count each frame must carry, in order
    size_t next_count = 0;
    int parts_left = 0;           // connections that still owe frames
    bool is_error = false;
  };
  using AnswerList = std::list<Answer>;
  struct Expectation {
    AnswerList::iterator answer;
    int64_t frames;  // still owed by this connection (an error frame settles them all)
  };
  struct Conn {
    std::unique_ptr<Upstream> upstream;
    std::deque<Expectation> expected;
    bool draining = false;
  };

  Conn* Connect(Conn* conn, uint16_t node);
  Conn* ConnOf(const Upstream* upstream);
  // Sends `command` on conn and makes `answer` wait for `frames` frames from it.
  bool Expect(Conn* conn, std::string_view command, AnswerList::iterator answer, int64_t frames);
  AnswerList::iterator Hold(Request* r);
  void AddFrame(Conn* conn, const protocol::ReplyFrame& frame, Slice bytes);
  void FinishIfComplete(AnswerList::iterator answer);
  void Relay(Slice bytes, bool is_error);
  void Reply(Request* r, const std::string& bytes, bool is_error);
  void RetireIdleConnections();
  bool ShardNodeInUse(uint16_t node) const;

  Worker* worker_;
  ClientSession* session_;
  // What the client is subscribed to, as Redis would have it after the commands dispatched.
  std::set<std::string, std::less<>> channels_;
  std::set<std::string, std::less<>> patterns_;
  std::map<std::string, uint16_t, std::less<>> shard_channels_;  // channel -> node
  Conn global_;
  std::map<uint16_t, Conn> shards_;  // by node
  std::vector<Conn> draining_;       // after RESET: owe answers; their messages are dropped
  AnswerList answers_;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_PUBSUB_RELAY_H_
