#include "protocol/errors.h"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "protocol/slot.h"

namespace slotpilot::protocol {
namespace {

constexpr std::array<std::pair<std::string_view, ErrorKind>, 10> kErrorPrefixes = {{
    {"MOVED", ErrorKind::kMoved},
    {"ASK", ErrorKind::kAsk},
    {"TRYAGAIN", ErrorKind::kTryAgain},
    {"CLUSTERDOWN", ErrorKind::kClusterDown},
    {"LOADING", ErrorKind::kLoading},
    {"MASTERDOWN", ErrorKind::kMasterDown},
    {"READONLY", ErrorKind::kReadOnly},
    {"CROSSSLOT", ErrorKind::kCrossSlot},
    {"BUSYKEY", ErrorKind::kBusyKey},
    {"NOPROTO", ErrorKind::kNoProto},
}};

// Longest value a redirect field may carry: 5 digits covers both a slot (< 16384) and a port.
constexpr size_t kMaxDigits = 5;

// Strict decimal: digits only (no sign, no spaces, which absl::SimpleAtoi would accept), at
// most kMaxDigits of them, value <= max. Never allocates.
std::optional<uint32_t> ParseSmallDecimal(std::string_view digits, uint32_t max) {
  if (digits.empty() || digits.size() > kMaxDigits) return std::nullopt;
  uint32_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

// Splits off the text before the first ' ' into *word; the rest (after the space) stays in
// *text. Returns false when there is no space.
bool TakeWord(std::string_view* text, std::string_view* word) {
  const size_t space = text->find(' ');
  if (space == std::string_view::npos) return false;
  *word = text->substr(0, space);
  text->remove_prefix(space + 1);
  return true;
}

// "host:port" where host may be an IPv4 address, a bare IPv6 address (Redis 7 sends "::1:7000"
// without brackets, hence the split at the LAST ':'), a bracketed IPv6 address, a hostname,
// empty or "?". Returns false on anything else.
bool ParseEndpoint(std::string_view endpoint, Redirect* out) {
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::optional<uint32_t> port = ParseSmallDecimal(endpoint.substr(colon + 1), 65535);
  if (!port || *port == 0) return false;
  std::string_view host = endpoint.substr(0, colon);
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
  }
  // A bracket left over (unbalanced or nested) or a control byte means a corrupt reply, not an
  // address we could ever connect to.
  for (char c : host) {
    if (c == '[' || c == ']' || static_cast<unsigned char>(c) <= ' ') return false;
  }
  out->host = host;
  out->port = static_cast<uint16_t>(*port);
  return true;
}

absl::Status MalformedRedirect(std::string_view text) {
  // Error path only: a bounded, escaped copy of the reply so a log line shows the bytes. (Debian's
  // Abseil has its own string_view type, hence the explicit conversion.)
  const absl::string_view shown(text.data(), std::min<size_t>(text.size(), 96));
  return absl::InvalidArgumentError(
      absl::StrCat("malformed redirect: \"", absl::CHexEscape(shown), "\""));
}

}  // namespace

ErrorKind ClassifyError(std::string_view text) {
  const std::string_view word = text.substr(0, text.find(' '));
  for (const auto& [prefix, kind] : kErrorPrefixes) {
    if (word == prefix) return kind;
  }
  return ErrorKind::kOther;
}

absl::StatusOr<Redirect> ParseRedirect(std::string_view text) {
  std::string_view rest = text;
  std::string_view word;
  std::string_view slot_text;
  if (!TakeWord(&rest, &word) || !TakeWord(&rest, &slot_text)) return MalformedRedirect(text);
  Redirect redirect;
  redirect.kind = ClassifyError(word);
  if (redirect.kind != ErrorKind::kMoved && redirect.kind != ErrorKind::kAsk) {
    return MalformedRedirect(text);
  }
  std::optional<uint32_t> slot = ParseSmallDecimal(slot_text, kSlotCount - 1);
  // `rest` is now the endpoint; a space in it is trailing junk (ParseEndpoint rejects it).
  if (!slot || !ParseEndpoint(rest, &redirect)) return MalformedRedirect(text);
  redirect.slot = static_cast<uint16_t>(*slot);
  return redirect;
}

}  // namespace slotpilot::protocol
