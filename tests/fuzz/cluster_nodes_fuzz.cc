// libFuzzer target: CLUSTER NODES text and MOVED/ASK redirects.
//
// Beyond "no crash, no leak, no UB", every accepted input is checked against the parser's
// contract: values in range, open-slot markers only on the single myself line, and a round trip
// (format what was parsed, parse it again, get the same result).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/errors.h"
#include "protocol/slot.h"
#include "protocol/topology.h"

namespace {

using slotpilot::protocol::ClusterNode;
using slotpilot::protocol::ErrorKind;
using slotpilot::protocol::kSlotCount;
using slotpilot::protocol::OpenSlot;
using slotpilot::protocol::Redirect;
using slotpilot::protocol::SlotRange;

void Check(bool condition) {
  if (!condition) std::abort();
}

std::string FormatFlags(uint32_t flags) {
  static constexpr std::string_view kNames[] = {
      "myself", "master", "slave", "fail?", "fail", "handshake", "noaddr", "nofailover", "noflags"};
  std::string out;
  for (size_t bit = 0; bit < std::size(kNames); ++bit) {
    if ((flags & (1u << bit)) == 0) continue;
    if (!out.empty()) out += ',';
    out += kNames[bit];
  }
  // Only unknown flags were given: any unknown word parses back to no bits.
  return out.empty() ? "x-unknown" : out;
}

void AppendMarkers(const std::vector<OpenSlot>& open, std::string_view arrow, std::string* out) {
  for (const OpenSlot& o : open) {
    *out += " [" + std::to_string(o.slot) + std::string(arrow) + o.peer_id + "]";
  }
}

std::string FormatLine(const ClusterNode& n) {
  std::string line =
      n.id + " " + n.host + ":" + std::to_string(n.port) + "@" + std::to_string(n.bus_port);
  if (!n.hostname.empty()) line += "," + n.hostname;
  line += " " + FormatFlags(n.flags) + " " + (n.master_id.empty() ? "-" : n.master_id);
  line += " " + std::to_string(n.ping_sent) + " " + std::to_string(n.pong_received) + " " +
          std::to_string(n.config_epoch) + (n.connected ? " connected" : " disconnected");
  for (const SlotRange& r : n.slots) {
    line += " " + std::to_string(r.first) + "-" + std::to_string(r.last);
  }
  AppendMarkers(n.migrating, "->-", &line);
  AppendMarkers(n.importing, "-<-", &line);
  return line + "\n";
}

bool SameNode(const ClusterNode& a, const ClusterNode& b) {
  return a.id == b.id && a.host == b.host && a.port == b.port && a.bus_port == b.bus_port &&
         a.hostname == b.hostname && a.flags == b.flags && a.master_id == b.master_id &&
         a.ping_sent == b.ping_sent && a.pong_received == b.pong_received &&
         a.config_epoch == b.config_epoch && a.connected == b.connected && a.slots == b.slots &&
         a.migrating == b.migrating && a.importing == b.importing;
}

void CheckNodes(std::string_view input) {
  auto nodes = slotpilot::protocol::ParseClusterNodes(input);
  if (!nodes.ok()) return;
  int myself = 0;
  std::string formatted;
  for (const ClusterNode& n : *nodes) {
    Check(n.id.size() == 40);
    myself += n.has(slotpilot::protocol::kFlagMyself) ? 1 : 0;
    Check(n.has(slotpilot::protocol::kFlagMyself) || (n.migrating.empty() && n.importing.empty()));
    for (const SlotRange& r : n.slots) Check(r.first <= r.last && r.last < kSlotCount);
    for (const OpenSlot& o : n.migrating) Check(o.slot < kSlotCount && o.peer_id.size() == 40);
    for (const OpenSlot& o : n.importing) Check(o.slot < kSlotCount && o.peer_id.size() == 40);
    formatted += FormatLine(n);
  }
  Check(myself <= 1);
  auto again = slotpilot::protocol::ParseClusterNodes(formatted);
  Check(again.ok() && again->size() == nodes->size());
  for (size_t i = 0; i < nodes->size(); ++i) Check(SameNode((*nodes)[i], (*again)[i]));
}

void CheckRedirect(std::string_view input) {
  slotpilot::protocol::ClassifyError(input);
  auto redirect = slotpilot::protocol::ParseRedirect(input);
  if (!redirect.ok()) return;
  Check(redirect->kind == ErrorKind::kMoved || redirect->kind == ErrorKind::kAsk);
  Check(redirect->slot < kSlotCount && redirect->port != 0);
  // The host is a view into the input, never a copy.
  Check(redirect->host.empty() ||
        (redirect->host.data() >= input.data() &&
         redirect->host.data() + redirect->host.size() <= input.data() + input.size()));
  std::string formatted = std::string(redirect->kind == ErrorKind::kMoved ? "MOVED " : "ASK ") +
                          std::to_string(redirect->slot) + " " + std::string(redirect->host) + ":" +
                          std::to_string(redirect->port);
  auto again = slotpilot::protocol::ParseRedirect(formatted);
  Check(again.ok() && again->kind == redirect->kind && again->slot == redirect->slot &&
        again->host == redirect->host && again->port == redirect->port);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckNodes(input);
  CheckRedirect(input);
  // Redirects arrive one per reply; also try each line so CLUSTER NODES seeds reach the parser.
  const size_t newline = input.find('\n');
  if (newline != std::string_view::npos) CheckRedirect(input.substr(0, newline));
  Check(slotpilot::protocol::KeyHashSlot(input) < kSlotCount);
  return 0;
}
