#include "migration/lease.h"

#include <algorithm>
#include <utility>

#include "protocol/errors.h"
#include "protocol/slot.h"
#include "protocol/strings.h"
#include "protocol/topology.h"
#include "spdlog/spdlog.h"

namespace slotpilot::migration {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

constexpr std::string_view kTag = "{mwatch}";

// KEYS: lease, fence. ARGV: sidecar id, ttl ms, takeover ("1": a lease held under our own id is
// an earlier process's, e.g. a sidecar restarted with the same --sidecar-id after a crash).
// Returns {1, value} when taken, {0, holder} when someone holds it. The fence only moves when the
// lease is taken, so tokens grow by holder, and a taken-over holder fails its next renewal.
constexpr std::string_view kAcquireScript = R"lua(
local cur = redis.call('GET', KEYS[1])
local mine = cur and ARGV[3] == '1' and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ':'
  and string.match(string.sub(cur, #ARGV[1] + 2), '^%d+$') ~= nil
if cur and not mine then return {0, cur} end
local t = redis.call('INCR', KEYS[2])
local v = ARGV[1] .. ':' .. t
if mine then
  redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
  return {1, v}
end
if redis.call('SET', KEYS[1], v, 'NX', 'PX', ARGV[2]) then return {1, v} end
return {0, ''}
)lua";

// KEYS: lease. ARGV: value, ttl ms. 1 when renewed.
constexpr std::string_view kRenewScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua";

// KEYS: lease. ARGV: value. 1 when deleted.
constexpr std::string_view kReleaseScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

// KEYS: lease, journal. ARGV: value, lease ttl ms, journal ttl ms, field, value, ... Writes the
// journal only while the lease is ours, renews the lease, stamps updated_at with server time.
constexpr std::string_view kJournalScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], 'updated_at', now, unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
)lua";

// KEYS: lease, stash. ARGV: value, ttl ms, payload. 1 when stored.
constexpr std::string_view kStashScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 1
)lua";

// KEYS: sidecars. ARGV: id, live ms. Beat with server time; drop ids dead for 10x live.
constexpr std::string_view kHeartbeatScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 10 * tonumber(ARGV[2]))
return now
)lua";

// KEYS: sidecars. ARGV: live ms.
constexpr std::string_view kLiveScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
)lua";

std::string EndpointText(const Endpoint& e) { return StrCat(e.host, ":", e.port); }

// "<sidecar-id>:<token>"; the id may itself contain ':'.
std::optional<LeaseHolder> ParseHolder(std::string_view value) {
  const size_t colon = value.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  LeaseHolder holder;
  holder.sidecar_id = std::string(value.substr(0, colon));
  if (!ParseInt(value.substr(colon + 1), &holder.token)) return std::nullopt;
  return holder;
}

// 64-bit FNV-1a, then a splitmix64 finaliser: stable across builds and platforms.
uint64_t StableHash(std::string_view data) {
  uint64_t h = 1469598103934665603ull;
  for (char c : data) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

bool IsUnavailableReply(const RespValue& reply) {
  if (!reply.is_error()) return false;
  switch (protocol::ClassifyError(reply.str)) {
    case protocol::ErrorKind::kAsk:
    case protocol::ErrorKind::kTryAgain:
    case protocol::ErrorKind::kClusterDown:
    case protocol::ErrorKind::kLoading:
    case protocol::ErrorKind::kMasterDown:
    case protocol::ErrorKind::kReadOnly:
      return true;
    default:
      return false;
  }
}

}  // namespace

Lease::Lease(LeaseOptions options, NodeConnector connector)
    : options_(std::move(options)), connector_(std::move(connector)) {}

uint16_t Lease::ControlSlot() { return protocol::KeyHashSlot(kTag); }
std::string Lease::LeaseKey(uint16_t slot) { return StrCat(kTag, ":lease:", slot); }
std::string Lease::FenceKey(uint16_t slot) { return StrCat(kTag, ":fence:", slot); }
std::string Lease::JournalKey(uint16_t slot) { return StrCat(kTag, ":journal:", slot); }
std::string Lease::SidecarsKey() { return StrCat(kTag, ":sidecars"); }

absl::Status Lease::UpdateView(const ClusterSnapshot& snapshot) {
  const uint16_t slot = ControlSlot();
  const MasterView* best = nullptr;
  for (const MasterView& m : snapshot.masters) {
    if (!m.reachable || m.loading) continue;
    const int16_t idx = m.owner_index[slot];
    if (idx < 0 || static_cast<size_t>(idx) >= m.nodes.size() || m.nodes[idx].id != m.id) continue;
    if (best == nullptr || m.config_epoch > best->config_epoch) best = &m;
  }
  if (best == nullptr) {
    return absl::UnavailableError(StrCat("no reachable master claims control slot ", slot));
  }
  control_ = best->endpoint;
  return absl::OkStatus();
}

absl::StatusOr<RespValue> Lease::Control(const std::vector<std::string>& args) {
  if (!control_) return absl::FailedPreconditionError("lease: control master unknown");
  std::vector<std::string_view> views(args.begin(), args.end());
  for (int hop = 0; hop < 2; ++hop) {
    absl::StatusOr<RedisClient*> client = connector_(*control_);
    if (!client.ok()) return client.status();
    absl::StatusOr<RespValue> reply = (*client)->Command(absl::MakeConstSpan(views));
    if (!reply.ok()) return reply.status();
    if (IsUnavailableReply(*reply)) {
      return absl::UnavailableError(
          StrCat("control slot unavailable at ", EndpointText(*control_), ": ", reply->str));
    }
    if (!reply->is_error() || protocol::ClassifyError(reply->str) != protocol::ErrorKind::kMoved) {
      return reply;
    }
    absl::StatusOr<protocol::Redirect> moved = protocol::ParseRedirect(reply->str);
    if (!moved.ok() || moved->endpoint_unknown()) {
      return absl::UnavailableError(StrCat("lease: bad redirect ", reply->str));
    }
    Endpoint next;
    next.host = moved->endpoint_is_same_host() ? control_->host : std::string(moved->host);
    next.port = moved->port;
    spdlog::info("lease: control slot moved from {} to {}", EndpointText(*control_),
                 EndpointText(next));
    control_ = std::move(next);
  }
  return absl::UnavailableError("lease: control slot keeps moving");
}

absl::StatusOr<RespValue> Lease::Eval(std::string_view script, const std::vector<std::string>& keys,
                                      const std::vector<std::string>& args) {
  std::vector<std::string> cmd = {"EVAL", std::string(script), std::to_string(keys.size())};
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  absl::StatusOr<RespValue> reply = Control(cmd);
  if (reply.ok() && reply->is_error()) {
    return absl::InternalError(StrCat("lease script failed: ", reply->str));
  }
  return reply;
}

absl::StatusOr<bool> Lease::Acquire(uint16_t slot) {
  if (slot == ControlSlot()) {
    return absl::FailedPreconditionError("refusing to lease the control slot itself");
  }
  // A lease under our id that this object did not take was left by a dead process with our id
  // (sidecar ids are unique per process): waiting for its TTL would stall the repair for nothing.
  const bool takeover = !held_.contains(slot);
  absl::StatusOr<RespValue> reply =
      Eval(kAcquireScript, {LeaseKey(slot), FenceKey(slot)},
           {options_.sidecar_id, std::to_string(options_.ttl.count()), takeover ? "1" : "0"});
  if (!reply.ok()) return reply.status();
  if (!reply->is_array() || reply->elements.size() != 2) {
    return absl::InternalError(
        StrCat("lease: unexpected acquire reply ", protocol::DebugString(*reply)));
  }
  if (reply->elements[0].integer != 1) {
    held_.erase(slot);
    return false;
  }
  held_[slot] = reply->elements[1].str;
  // Replication is asynchronous: give the lease a chance to reach a replica before acting.
  if (options_.wait_for_replica) {
    absl::StatusOr<RespValue> role = Control({"ROLE"});
    if (role.ok() && role->is_array() && role->elements.size() >= 3 &&
        role->elements[2].is_array() && !role->elements[2].elements.empty()) {
      absl::StatusOr<RespValue> acked = Control({"WAIT", "1", "100"});
      if (!acked.ok() || acked->integer < 1) {
        spdlog::warn("lease: slot={} token={} not acknowledged by a replica within 100 ms", slot,
                     *token(slot));
      }
    }
  }
  return true;
}

absl::Status Lease::Renew(uint16_t slot) {
  auto it = held_.find(slot);
  if (it == held_.end()) return absl::FailedPreconditionError(StrCat("lease ", slot, " not held"));
  absl::StatusOr<RespValue> reply =
      Eval(kRenewScript, {LeaseKey(slot)}, {it->second, std::to_string(options_.ttl.count())});
  if (!reply.ok()) return reply.status();
  if (reply->integer != 1) {
    held_.erase(it);
    return absl::FailedPreconditionError(StrCat("lease ", slot, " lost"));
  }
  return absl::OkStatus();
}

absl::Status Lease::Release(uint16_t slot) {
  auto it = held_.find(slot);
  const std::string value = it == held_.end() ? std::string() : it->second;
  if (it != held_.end()) held_.erase(it);
  if (value.empty()) return absl::OkStatus();
  absl::StatusOr<RespValue> reply = Eval(kReleaseScript, {LeaseKey(slot)}, {value});
  return reply.ok() ? absl::OkStatus() : reply.status();
}

absl::StatusOr<std::optional<LeaseHolder>> Lease::Holder(uint16_t slot) {
  absl::StatusOr<RespValue> value = Control({"GET", LeaseKey(slot)});
  if (!value.ok()) return value.status();
  if (value->type != ReplyType::kBulk) return std::optional<LeaseHolder>();
  std::optional<LeaseHolder> holder = ParseHolder(value->str);
  if (!holder) return absl::InternalError(StrCat("lease: malformed holder ", value->str));
  absl::StatusOr<RespValue> pttl = Control({"PTTL", LeaseKey(slot)});
  if (pttl.ok() && pttl->type == ReplyType::kInteger) holder->pttl_ms = pttl->integer;
  return holder;
}

std::optional<uint64_t> Lease::token(uint16_t slot) const {
  auto it = held_.find(slot);
  if (it == held_.end()) return std::nullopt;
  std::optional<LeaseHolder> holder = ParseHolder(it->second);
  return holder ? std::optional<uint64_t>(holder->token) : std::nullopt;
}

absl::Status Lease::WriteJournal(uint16_t slot, const Journal& journal) {
  auto it = held_.find(slot);
  if (it == held_.end()) return absl::FailedPreconditionError(StrCat("lease ", slot, " not held"));
  std::vector<std::string> args = {it->second, std::to_string(options_.ttl.count()),
                                   std::to_string(options_.journal_ttl.count())};
  const std::pair<std::string_view, std::string> fields[] = {
      {"token", std::to_string(*token(slot))},
      {"holder", options_.sidecar_id},
      {"step", journal.step},
      {"action", journal.action},
      {"source", journal.source},
      {"target", journal.target},
      {"attempts", std::to_string(journal.attempts)},
      {"keys_before", std::to_string(journal.keys_before)},
      {"note", journal.note}};
  for (const auto& [field, value] : fields) {
    args.emplace_back(field);
    args.push_back(value);
  }
  absl::StatusOr<RespValue> reply = Eval(kJournalScript, {LeaseKey(slot), JournalKey(slot)}, args);
  if (!reply.ok()) return reply.status();
  if (reply->integer != 1) {
    held_.erase(slot);
    return absl::FailedPreconditionError(StrCat("lease ", slot, " lost (journal not written)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Journal>> Lease::ReadJournal(uint16_t slot) {
  absl::StatusOr<RespValue> reply = Control({"HGETALL", JournalKey(slot)});
  if (!reply.ok()) return reply.status();
  if (!reply->is_array() || reply->elements.empty()) return std::optional<Journal>();
  Journal j;
  const std::vector<RespValue>& e = reply->elements;
  for (size_t i = 0; i + 1 < e.size(); i += 2) {
    const std::string& f = e[i].str;
    const std::string& v = e[i + 1].str;
    if (f == "token")
      ParseInt(v, &j.token);
    else if (f == "holder")
      j.holder = v;
    else if (f == "step")
      j.step = v;
    else if (f == "action")
      j.action = v;
    else if (f == "source")
      j.source = v;
    else if (f == "target")
      j.target = v;
    else if (f == "updated_at")
      ParseInt(v, &j.updated_at_ms);
    else if (f == "attempts")
      ParseInt(v, &j.attempts);
    else if (f == "keys_before")
      ParseInt(v, &j.keys_before);
    else if (f == "note")
      j.note = v;
  }
  return std::optional<Journal>(std::move(j));
}

std::string Lease::StashKey(uint16_t slot, uint64_t token, std::string_view key) {
  return StrCat(kTag, ":stash:", slot, ":", token, ":", key);
}

absl::StatusOr<std::string> Lease::Stash(uint16_t slot, std::string_view key,
                                         std::string_view payload) {
  auto it = held_.find(slot);
  if (it == held_.end()) return absl::FailedPreconditionError(StrCat("lease ", slot, " not held"));
  const std::string stash = StashKey(slot, *token(slot), key);
  absl::StatusOr<RespValue> reply =
      Eval(kStashScript, {LeaseKey(slot), stash},
           {it->second, std::to_string(options_.journal_ttl.count()), std::string(payload)});
  if (!reply.ok()) return reply.status();
  if (reply->integer != 1) {
    held_.erase(slot);
    return absl::FailedPreconditionError(StrCat("lease ", slot, " lost (nothing stashed)"));
  }
  return stash;
}

absl::Status Lease::Heartbeat() {
  absl::StatusOr<RespValue> reply =
      Eval(kHeartbeatScript, {SidecarsKey()},
           {options_.sidecar_id, std::to_string(options_.heartbeat_ttl.count())});
  return reply.ok() ? absl::OkStatus() : reply.status();
}

absl::StatusOr<std::vector<std::string>> Lease::LiveSidecars() {
  absl::StatusOr<RespValue> reply =
      Eval(kLiveScript, {SidecarsKey()}, {std::to_string(options_.heartbeat_ttl.count())});
  if (!reply.ok()) return reply.status();
  std::vector<std::string> ids;
  for (const RespValue& e : reply->elements) ids.push_back(e.str);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string Lease::RendezvousWinner(uint16_t slot, absl::Span<const std::string> ids) {
  std::string best;
  uint64_t best_weight = 0;
  for (const std::string& id : ids) {
    const uint64_t w = StableHash(StrCat(slot, "/", id));
    if (best.empty() || w > best_weight || (w == best_weight && id < best)) {
      best = id;
      best_weight = w;
    }
  }
  return best;
}

absl::StatusOr<bool> Lease::IsPreferred(uint16_t slot) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_beat_ > options_.heartbeat_ttl / 3) {
    absl::Status beat = Heartbeat();
    if (!beat.ok()) return beat;
    last_beat_ = now;
  }
  absl::StatusOr<std::vector<std::string>> live = LiveSidecars();
  if (!live.ok()) return live.status();
  if (std::find(live->begin(), live->end(), options_.sidecar_id) == live->end()) {
    live->push_back(options_.sidecar_id);
  }
  return RendezvousWinner(slot, *live) == options_.sidecar_id;
}

std::string Lease::OtherActor(uint16_t slot, bool rendezvous) {
  absl::StatusOr<std::optional<LeaseHolder>> holder = Holder(slot);
  if (!holder.ok()) return "";
  if (holder->has_value()) {
    return (*holder)->sidecar_id == options_.sidecar_id ? "" : (*holder)->sidecar_id;
  }
  if (!rendezvous) return "";
  absl::StatusOr<bool> preferred = IsPreferred(slot);
  if (!preferred.ok() || *preferred) return "";
  absl::StatusOr<std::vector<std::string>> live = LiveSidecars();
  return live.ok() ? RendezvousWinner(slot, *live) : "";
}

}  // namespace slotpilot::migration
