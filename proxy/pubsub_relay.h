// Pub/Sub for one client (RESP2 subscribed mode). SUBSCRIBE / PSUBSCRIBE go to one dedicated
// connection to a master (a cluster forwards PUBLISH to every node); SSUBSCRIBE goes to a
// dedicated connection to the node serving the shard channel's slot. Everything those connections
// push (subscription replies, messages) is relayed to the client, in order.
//
// While subscribed, only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and RESET are allowed, as in
// Redis. When every subscription is gone the connections are released and the client is back in
// normal mode. If a subscribed connection drops, the client connection is closed, so the
// application notices and subscribes again rather than silently missing messages.
// Loop thread only; owned by its ClientSession.
#ifndef SLOTPILOT_PROXY_PUBSUB_RELAY_H_
#define SLOTPILOT_PROXY_PUBSUB_RELAY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string_view>

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

  // True while the client is in subscribed mode.
  bool subscribed() const;

  // SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE / PING (in subscribed mode).
  void SendGlobal(Request* r);
  // SSUBSCRIBE / SUNSUBSCRIBE with channels, all in `slot`.
  void SendShard(Request* r, uint16_t slot);
  // SUNSUBSCRIBE without channels: every shard connection.
  void SendAllShards(Request* r, absl::Span<const std::string_view> argv);
  // Drops every subscription (RESET, client gone).
  void Reset();

  void OnPush(Upstream* from, const protocol::ReplyFrame& frame, Slice bytes) override;
  void OnPushConnectionLost(Upstream* from, std::string_view reason) override;

 private:
  struct Conn {
    std::unique_ptr<Upstream> upstream;
    int64_t subscriptions = 0;   // the count in the server's latest (un)subscribe reply
    bool awaiting_reply = false; // a command was sent and nothing came back since
  };
  Conn* Connect(Conn* slot, uint16_t node);
  void MaybeLeaveSubscribedMode();

  Worker* worker_;
  ClientSession* session_;
  Conn global_;
  uint16_t global_node_ = 0;
  std::map<uint16_t, Conn> shards_;  // by node
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_PUBSUB_RELAY_H_
