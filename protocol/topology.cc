#include "protocol/topology.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "protocol/slot.h"

namespace slotpilot::protocol {
namespace {

// ----------------------------------------------------------------------------------------------
// Shared helpers

constexpr size_t kNodeIdLength = 40;

// Strict decimal: digits only, no sign or whitespace (absl::SimpleAtoi accepts both, and a
// " 12" or "+12" in a topology reply means the reply is not what we think it is).
std::optional<uint64_t> ParseDecimal(std::string_view digits, uint64_t max) {
  if (digits.empty() || digits.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;  // value * 10 + digit > max
    value = value * 10 + digit;
  }
  return value;
}

// Debian's Abseil keeps its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW is 0), so a
// std::string_view is converted explicitly where it crosses into Abseil.
absl::string_view ToAbsl(std::string_view text) { return {text.data(), text.size()}; }

// Bounded, escaped copy of untrusted text for an error message.
std::string Quote(std::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(ToAbsl(text.substr(0, 64))),
                      text.size() > 64 ? "...\"" : "\"");
}

// Pieces of `text` between `sep`s. Empty pieces are kept unless skip_empty.
std::vector<std::string_view> Split(std::string_view text, char sep, bool skip_empty) {
  std::vector<std::string_view> pieces;
  while (true) {
    const size_t end = text.find(sep);
    std::string_view piece = text.substr(0, end);
    if (!piece.empty() || !skip_empty) pieces.push_back(piece);
    if (end == std::string_view::npos) return pieces;
    text.remove_prefix(end + 1);
  }
}

absl::Status Malformed(const char* what, std::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat("bad ", what, " ", Quote(text)));
}

// Prefixes a failure with where it happened, so the message names the entry or line.
absl::Status Annotate(const absl::Status& status, const char* where, size_t index) {
  return absl::Status(status.code(), absl::StrCat(where, " ", index, ": ", status.message()));
}

absl::StatusOr<SlotRange> MakeRange(uint64_t first, uint64_t last) {
  if (first >= kSlotCount || last >= kSlotCount || first > last) {
    return absl::InvalidArgumentError(absl::StrCat("bad slot range ", first, "-", last));
  }
  return SlotRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

// ----------------------------------------------------------------------------------------------
// RESP helpers (CLUSTER SLOTS, CLUSTER SHARDS)

absl::Status ExpectArray(const RespValue& value, const char* what) {
  if (value.is_error()) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": error reply ", Quote(value.str)));
  }
  if (!value.is_array()) return absl::InvalidArgumentError(absl::StrCat(what, " is not an array"));
  return absl::OkStatus();
}

std::optional<std::string_view> StringOf(const RespValue& value) {
  if (value.type != ReplyType::kBulk && value.type != ReplyType::kStatus) return std::nullopt;
  return value.str;
}

// An integer reply, or a bulk string holding a decimal (accepted because RESP-speaking proxies
// in front of Redis have been seen to stringify integers in topology replies).
std::optional<uint64_t> UnsignedOf(const RespValue& value, uint64_t max) {
  if (value.type == ReplyType::kInteger) {
    if (value.integer < 0 || static_cast<uint64_t>(value.integer) > max) return std::nullopt;
    return static_cast<uint64_t>(value.integer);
  }
  std::optional<std::string_view> text = StringOf(value);
  if (!text) return std::nullopt;
  return ParseDecimal(*text, max);
}

absl::StatusOr<SlotRange> RangeOf(const RespValue& first, const RespValue& last) {
  std::optional<uint64_t> f = UnsignedOf(first, kSlotCount - 1);
  std::optional<uint64_t> l = UnsignedOf(last, kSlotCount - 1);
  if (!f || !l) return absl::InvalidArgumentError("slot bound is not an integer below 16384");
  return MakeRange(*f, *l);
}

// [host, port] (Redis 3.0), [host, port, id] (3.2+), [host, port, id, metadata] (7.0+).
absl::StatusOr<NodeEndpoint> SlotsNodeOf(const RespValue& value) {
  if (!value.is_array() || value.elements.size() < 2) {
    return absl::InvalidArgumentError("node is not an array of at least [host, port]");
  }
  std::optional<std::string_view> host = StringOf(value.elements[0]);
  std::optional<uint64_t> port = UnsignedOf(value.elements[1], 65535);
  if (!host || !port) return absl::InvalidArgumentError("node host or port has the wrong type");
  NodeEndpoint endpoint;
  endpoint.host = std::string(*host);
  endpoint.port = static_cast<uint16_t>(*port);
  if (value.elements.size() >= 3) {
    std::optional<std::string_view> id = StringOf(value.elements[2]);
    if (!id) return absl::InvalidArgumentError("node id is not a string");
    endpoint.id = std::string(*id);
  }
  // elements[3] (hostname/ip metadata) is informational; the preferred endpoint is elements[0].
  return endpoint;
}

absl::StatusOr<SlotsEntry> SlotsEntryOf(const RespValue& value) {
  if (!value.is_array() || value.elements.size() < 3) {
    return absl::InvalidArgumentError("entry is not an array [start, end, master, replicas...]");
  }
  absl::StatusOr<SlotRange> range = RangeOf(value.elements[0], value.elements[1]);
  if (!range.ok()) return range.status();
  SlotsEntry entry;
  entry.range = *range;
  for (size_t i = 2; i < value.elements.size(); ++i) {
    absl::StatusOr<NodeEndpoint> node = SlotsNodeOf(value.elements[i]);
    if (!node.ok()) return node.status();
    if (i == 2) {
      entry.master = *std::move(node);
    } else {
      entry.replicas.push_back(*std::move(node));
    }
  }
  return entry;
}

// Calls fn(key, value) for each pair of a map sent as a flat RESP2 array.
template <typename Fn>
absl::Status ForEachPair(const RespValue& map, const char* what, Fn fn) {
  if (!map.is_array() || map.elements.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a flat key/value array"));
  }
  for (size_t i = 0; i < map.elements.size(); i += 2) {
    std::optional<std::string_view> key = StringOf(map.elements[i]);
    if (!key) return absl::InvalidArgumentError(absl::StrCat(what, " has a non-string key"));
    absl::Status status = fn(*key, map.elements[i + 1]);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// "slots" of a shard: a flat list start1, end1, start2, end2, ...
absl::StatusOr<std::vector<SlotRange>> ShardSlotsOf(const RespValue& value) {
  if (!value.is_array() || value.elements.size() % 2 != 0) {
    return absl::InvalidArgumentError("shard slots is not a flat list of start/end pairs");
  }
  std::vector<SlotRange> ranges;
  ranges.reserve(value.elements.size() / 2);
  for (size_t i = 0; i < value.elements.size(); i += 2) {
    absl::StatusOr<SlotRange> range = RangeOf(value.elements[i], value.elements[i + 1]);
    if (!range.ok()) return range.status();
    ranges.push_back(*range);
  }
  return ranges;
}

// The fields of a CLUSTER SHARDS node before we pick its endpoint.
struct ShardNodeFields {
  ShardNode node;
  std::optional<uint64_t> port;
  std::optional<uint64_t> tls_port;
  std::optional<std::string_view> ip;
  std::optional<std::string_view> endpoint;
};

bool CopyString(const RespValue& value, std::string* out) {
  std::optional<std::string_view> text = StringOf(value);
  if (text) *out = std::string(*text);
  return text.has_value();
}

absl::Status ApplyShardNodeField(std::string_view key, const RespValue& value,
                                 ShardNodeFields* fields) {
  constexpr uint64_t kInt64Max = std::numeric_limits<int64_t>::max();
  ShardNode& node = fields->node;
  bool ok = true;
  if (key == "id") {
    ok = CopyString(value, &node.endpoint.id);
  } else if (key == "port") {
    ok = (fields->port = UnsignedOf(value, 65535)).has_value();
  } else if (key == "tls-port") {
    ok = (fields->tls_port = UnsignedOf(value, 65535)).has_value();
  } else if (key == "ip") {
    ok = (fields->ip = StringOf(value)).has_value();
  } else if (key == "endpoint") {
    ok = (fields->endpoint = StringOf(value)).has_value();
  } else if (key == "role") {
    ok = CopyString(value, &node.role);
  } else if (key == "health") {
    ok = CopyString(value, &node.health);
  } else if (key == "replication-offset") {
    std::optional<uint64_t> offset = UnsignedOf(value, kInt64Max);
    if (offset) node.replication_offset = static_cast<int64_t>(*offset);
    ok = offset.has_value();
  }
  // Other keys (hostname, future additions) are not needed to route and are skipped, so a newer
  // server does not break topology refresh.
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("shard node field ", Quote(key), " has a bad value"));
}

absl::StatusOr<ShardNode> ShardNodeOf(const RespValue& value) {
  ShardNodeFields fields;
  absl::Status status =
      ForEachPair(value, "shard node", [&](std::string_view key, const RespValue& v) {
        return ApplyShardNodeField(key, v, &fields);
      });
  if (!status.ok()) return status;
  // "endpoint" is the preferred endpoint (cluster-preferred-endpoint-type); "ip" is what older
  // 7.0 builds may send alone. A TLS-only node reports just "tls-port".
  std::optional<std::string_view> host =
      fields.endpoint && !fields.endpoint->empty() ? fields.endpoint : fields.ip;
  std::optional<uint64_t> port = fields.port ? fields.port : fields.tls_port;
  if (fields.node.endpoint.id.empty() || !host || !port) {
    return absl::InvalidArgumentError("shard node lacks id, ip/endpoint or port");
  }
  fields.node.endpoint.host = std::string(*host);
  fields.node.endpoint.port = static_cast<uint16_t>(*port);
  return std::move(fields.node);
}

absl::Status ApplyShardField(std::string_view key, const RespValue& value, Shard* shard,
                             int* seen) {
  if (key == "slots") {
    absl::StatusOr<std::vector<SlotRange>> slots = ShardSlotsOf(value);
    if (!slots.ok()) return slots.status();
    shard->slots = *std::move(slots);
    *seen |= 1;
  } else if (key == "nodes") {
    if (!value.is_array()) return absl::InvalidArgumentError("shard nodes is not an array");
    for (size_t i = 0; i < value.elements.size(); ++i) {
      absl::StatusOr<ShardNode> node = ShardNodeOf(value.elements[i]);
      if (!node.ok()) return Annotate(node.status(), "node", i);
      shard->nodes.push_back(*std::move(node));
    }
    *seen |= 2;
  }
  return absl::OkStatus();
}

absl::StatusOr<Shard> ShardOf(const RespValue& value) {
  Shard shard;
  int seen = 0;
  absl::Status status = ForEachPair(value, "shard", [&](std::string_view key, const RespValue& v) {
    return ApplyShardField(key, v, &shard, &seen);
  });
  if (!status.ok()) return status;
  if (seen != 3) return absl::InvalidArgumentError("shard lacks slots or nodes");
  return shard;
}

// ----------------------------------------------------------------------------------------------
// CLUSTER NODES text

bool IsNodeId(std::string_view id) {
  if (id.size() != kNodeIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "ip:port@cport" or "ip:port" (servers before 4.0 had no bus port in the output).
absl::Status ParseHostPort(std::string_view text, ClusterNode* node) {
  const size_t at = text.find('@');
  if (at != std::string_view::npos) {
    std::optional<uint64_t> bus_port = ParseDecimal(text.substr(at + 1), 65535);
    if (!bus_port) return Malformed("bus port in", text);
    node->bus_port = static_cast<uint16_t>(*bus_port);
    text = text.substr(0, at);
  }
  // Split at the LAST ':' because an IPv6 address ("::1:7000") is printed without brackets.
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return Malformed("address", text);
  std::optional<uint64_t> port = ParseDecimal(text.substr(colon + 1), 65535);
  if (!port) return Malformed("port in", text);
  node->port = static_cast<uint16_t>(*port);
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  // Redis prints IPv6 bare; tolerate one pair of brackets, but a leftover one is corruption.
  if (host.find_first_of("[]") != std::string_view::npos) return Malformed("host in", text);
  node->host = std::string(host);
  return absl::OkStatus();
}

// "ip:port@cport[,hostname]". nodes.conf (7.2+) appends ",key=value" aux fields after the
// hostname; we accept and skip them so the same parser reads a saved config.
absl::Status ParseAddress(std::string_view token, ClusterNode* node) {
  std::vector<std::string_view> parts = Split(token, ',', /*skip_empty=*/false);
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i].find('=') == std::string_view::npos) return Malformed("address", token);
  }
  if (parts.size() >= 2) node->hostname = std::string(parts[1]);
  return ParseHostPort(parts[0], node);
}

absl::Status ParseFlags(std::string_view token, ClusterNode* node) {
  static constexpr std::pair<std::string_view, NodeFlag> kFlags[] = {
      {"myself", kFlagMyself},   {"master", kFlagMaster},
      {"slave", kFlagReplica},   {"fail?", kFlagPfail},
      {"fail", kFlagFail},       {"handshake", kFlagHandshake},
      {"noaddr", kFlagNoAddr},   {"nofailover", kFlagNoFailover},
      {"noflags", kFlagNoFlags},
  };
  for (std::string_view word : Split(token, ',', /*skip_empty=*/false)) {
    if (word.empty()) return Malformed("flags", token);
    for (const auto& [name, flag] : kFlags) {
      if (word == name) node->flags |= flag;
    }
    // An unknown flag is skipped: a newer server may add flags, and none of them changes who
    // serves which slot.
  }
  return absl::OkStatus();
}

// "[slot->-dst-id]" (migrating) or "[slot-<-src-id]" (importing).
absl::Status ParseOpenSlot(std::string_view token, ClusterNode* node) {
  if (!node->has(kFlagMyself)) return Malformed("open-slot marker on a non-myself line:", token);
  if (token.size() < 3 || token.back() != ']') return Malformed("open-slot marker", token);
  std::string_view inner = token.substr(1, token.size() - 2);
  const size_t dash = inner.find('-');
  if (dash == std::string_view::npos) return Malformed("open-slot marker", token);
  std::optional<uint64_t> slot = ParseDecimal(inner.substr(0, dash), kSlotCount - 1);
  const std::string_view arrow = inner.substr(dash, 3);
  const std::string_view peer = inner.substr(std::min(inner.size(), dash + 3));
  if (!slot || !IsNodeId(peer) || (arrow != "->-" && arrow != "-<-")) {
    return Malformed("open-slot marker", token);
  }
  OpenSlot open{.slot = static_cast<uint16_t>(*slot), .peer_id = std::string(peer)};
  (arrow == "->-" ? node->migrating : node->importing).push_back(std::move(open));
  return absl::OkStatus();
}

// "N", "N-M" or an open-slot marker.
absl::Status ParseSlotToken(std::string_view token, ClusterNode* node) {
  if (token.front() == '[') return ParseOpenSlot(token, node);
  const size_t dash = token.find('-');
  std::optional<uint64_t> first = ParseDecimal(token.substr(0, dash), kSlotCount - 1);
  std::optional<uint64_t> last =
      dash == std::string_view::npos ? first : ParseDecimal(token.substr(dash + 1), kSlotCount - 1);
  if (!first || !last || *first > *last) return Malformed("slot", token);
  node->slots.push_back(SlotRange{static_cast<uint16_t>(*first), static_cast<uint16_t>(*last)});
  return absl::OkStatus();
}

// Fields 3..7: master id, ping-sent, pong-recv, config-epoch, link-state.
absl::Status ParseNodeState(const std::vector<std::string_view>& f, ClusterNode* node) {
  if (f[3] != "-") {
    if (!IsNodeId(f[3])) return Malformed("master id", f[3]);
    node->master_id = std::string(f[3]);
  }
  constexpr uint64_t kInt64Max = std::numeric_limits<int64_t>::max();
  std::optional<uint64_t> ping = ParseDecimal(f[4], kInt64Max);
  std::optional<uint64_t> pong = ParseDecimal(f[5], kInt64Max);
  std::optional<uint64_t> epoch = ParseDecimal(f[6], std::numeric_limits<uint64_t>::max());
  if (!ping) return Malformed("ping-sent time", f[4]);
  if (!pong) return Malformed("pong-received time", f[5]);
  if (!epoch) return Malformed("config epoch", f[6]);
  node->ping_sent = static_cast<int64_t>(*ping);
  node->pong_received = static_cast<int64_t>(*pong);
  node->config_epoch = *epoch;
  if (f[7] != "connected" && f[7] != "disconnected") return Malformed("link state", f[7]);
  node->connected = f[7] == "connected";
  return absl::OkStatus();
}

absl::StatusOr<ClusterNode> ParseNodeLine(std::string_view line) {
  std::vector<std::string_view> fields = Split(line, ' ', /*skip_empty=*/true);
  if (fields.size() < 8) return absl::InvalidArgumentError("fewer than 8 fields");
  ClusterNode node;
  if (!IsNodeId(fields[0])) return Malformed("node id", fields[0]);
  node.id = std::string(fields[0]);
  absl::Status status = ParseAddress(fields[1], &node);
  if (status.ok()) status = ParseFlags(fields[2], &node);
  if (status.ok()) status = ParseNodeState(fields, &node);
  for (size_t i = 8; status.ok() && i < fields.size(); ++i) {
    status = ParseSlotToken(fields[i], &node);
  }
  if (!status.ok()) return status;
  return node;
}

}  // namespace

absl::StatusOr<std::vector<SlotsEntry>> ParseClusterSlots(const RespValue& reply) {
  absl::Status status = ExpectArray(reply, "CLUSTER SLOTS reply");
  if (!status.ok()) return status;
  std::vector<SlotsEntry> entries;
  entries.reserve(reply.elements.size());
  for (size_t i = 0; i < reply.elements.size(); ++i) {
    absl::StatusOr<SlotsEntry> entry = SlotsEntryOf(reply.elements[i]);
    if (!entry.ok()) return Annotate(entry.status(), "CLUSTER SLOTS entry", i);
    entries.push_back(*std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::vector<Shard>> ParseClusterShards(const RespValue& reply) {
  absl::Status status = ExpectArray(reply, "CLUSTER SHARDS reply");
  if (!status.ok()) return status;
  std::vector<Shard> shards;
  shards.reserve(reply.elements.size());
  for (size_t i = 0; i < reply.elements.size(); ++i) {
    absl::StatusOr<Shard> shard = ShardOf(reply.elements[i]);
    if (!shard.ok()) return Annotate(shard.status(), "CLUSTER SHARDS shard", i);
    shards.push_back(*std::move(shard));
  }
  return shards;
}

absl::StatusOr<std::vector<ClusterNode>> ParseClusterNodes(std::string_view text) {
  std::vector<ClusterNode> nodes;
  bool seen_myself = false;
  size_t line_number = 0;
  for (std::string_view line : Split(text, '\n', /*skip_empty=*/false)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(' ') == std::string_view::npos) continue;  // blank line
    absl::StatusOr<ClusterNode> node = ParseNodeLine(line);
    // Only the answering node prints "myself"; two of them means two replies were mixed up.
    if (node.ok() && node->has(kFlagMyself) && std::exchange(seen_myself, true)) {
      node = absl::InvalidArgumentError("second myself line");
    }
    if (!node.ok()) return Annotate(node.status(), "CLUSTER NODES line", line_number);
    nodes.push_back(*std::move(node));
  }
  return nodes;
}

}  // namespace slotpilot::protocol
