// Introspection commands the proxy answers about itself, across all its workers: CLIENT LIST,
// CLIENT INFO (the proxy's own clients, in Redis's format) and INFO (server, clients and proxy
// sections from the proxy, keyspace summed over every master). Loop thread of `worker` only.
#ifndef SLOTPILOT_PROXY_LOCAL_COMMANDS_H_
#define SLOTPILOT_PROXY_LOCAL_COMMANDS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/types/span.h"
#include "proxy/client_registry.h"
#include "proxy/request.h"

namespace slotpilot::proxy {

class ClientSession;
class Worker;

// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]
void AnswerClientList(Worker* worker, absl::Span<const std::string_view> argv, Request* r);
// CLIENT INFO: the calling client's own line.
void AnswerClientInfo(Worker* worker, ClientSession* session, Request* r);
// INFO [section ...]: keyspace needs every master, so it may answer later.
void AnswerInfo(Worker* worker, absl::Span<const std::string_view> argv, Request* r);

// One CLIENT LIST line (with its "\n") for `row` at loop time `now_ms`.
std::string FormatClientLine(const ClientRow& row, const std::string& name, uint64_t now_ms);

// "db0:keys=..,expires=..,avg_ttl=.." summed over INFO KEYSPACE texts of several masters;
// empty when they hold no key (Redis omits empty databases).
std::string MergeKeyspaceLines(absl::Span<const std::string_view> infos);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_LOCAL_COMMANDS_H_
