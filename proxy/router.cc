#include "proxy/router.h"

#include "absl/strings/str_cat.h"
#include "proxy/client_session.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {

void Router::Route(Request* r) {
  RoutingTable& table = worker_->routing();
  if (r->target_node >= 0) {
    SendTo(r, static_cast<uint16_t>(r->target_node));
    return;
  }
  if (r->keyed) {
    uint16_t node = table.NodeForSlot(r->slot);
    if (node == RoutingTable::kNoNode) {
      if (table.version() == 0) {
        worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
      } else {
        worker_->CompleteWithError(r, "CLUSTERDOWN Hash slot not served");
      }
      return;
    }
    SendTo(r, node);
    return;
  }
  const auto& masters = table.masters();
  if (masters.empty()) {
    worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
    return;
  }
  SendTo(r, masters[next_master_++ % masters.size()]);
}

void Router::SendTo(Request* r, uint16_t node) {
  if (r->via != nullptr) {  // pinned (a transaction's connection)
    r->via->Send(r);
    return;
  }
  if (r->blocking && r->session != nullptr) {  // never block a shared pipelined connection
    r->session->DedicatedUpstream(node)->Send(r);
    return;
  }
  if (!worker_->throttle().Admit(r, node)) return;  // waits for budget (node is a migration source)
  worker_->UpstreamFor(node)->Send(r);
}

}  // namespace slotpilot::proxy
