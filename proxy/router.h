// Sends a request to the node that serves it: the slot's owner in the worker's RoutingTable, or
// any master for keyless commands. Loop thread only.
#ifndef SLOTPILOT_PROXY_ROUTER_H_
#define SLOTPILOT_PROXY_ROUTER_H_

#include <cstdint>

#include "proxy/request.h"

namespace slotpilot::proxy {

class Worker;

class Router {
 public:
  explicit Router(Worker* worker) : worker_(worker) {}

  // Routes by r->slot when r->keyed, else to a master chosen round-robin.
  void Route(Request* r);
  // Sends r to a specific node (after MOVED / ASK).
  void SendTo(Request* r, uint16_t node);

 private:
  Worker* worker_;
  uint32_t next_master_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_ROUTER_H_
