// Classification of Redis error replies the proxy acts on, and parsing of redirects.
#ifndef SLOTPILOT_PROTOCOL_ERRORS_H_
#define SLOTPILOT_PROTOCOL_ERRORS_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace slotpilot::protocol {

enum class ErrorKind : uint8_t {
  kOther,
  kMoved,        // MOVED <slot> <endpoint>:<port>
  kAsk,          // ASK <slot> <endpoint>:<port>
  kTryAgain,     // TRYAGAIN Multiple keys request during rehashing of slot
  kClusterDown,  // CLUSTERDOWN The cluster is down / Hash slot not served / ...
  kLoading,      // LOADING Redis is loading the dataset in memory
  kMasterDown,   // MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.
  kReadOnly,     // READONLY You can't write against a read only replica.
  kCrossSlot,    // CROSSSLOT Keys in request don't hash to the same slot
  kBusyKey,      // BUSYKEY Target key name already exists.
  kNoProto,      // NOPROTO unsupported protocol version
};

// `text` is the error reply without the leading '-' and the trailing CRLF. Only the first word
// decides; it must match exactly (case-sensitive, as Redis sends it).
ErrorKind ClassifyError(std::string_view text);

// Where a MOVED or ASK points. `host` views into the error text it was parsed from.
struct Redirect {
  ErrorKind kind = ErrorKind::kMoved;  // kMoved or kAsk
  uint16_t slot = 0;
  // The endpoint as Redis sent it: an IPv4 address, an IPv6 address (with or without brackets;
  // brackets are stripped), a hostname, empty (":7000" = the endpoint the client is already
  // connected to) or "?" (unknown endpoint). Use endpoint_is_same_host / endpoint_unknown.
  std::string_view host;
  uint16_t port = 0;
  bool endpoint_is_same_host() const { return host.empty(); }
  bool endpoint_unknown() const { return host == "?"; }
};

// Parses "MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:7000", "MOVED 3999 ::1:7000",
// "MOVED 3999 redis-0.example:7000", "MOVED 3999 :7000", "MOVED 3999 ?:7000".
absl::StatusOr<Redirect> ParseRedirect(std::string_view text);

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_ERRORS_H_
