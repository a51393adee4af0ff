// The Dispatcher's commands that become several sub-requests: multi-key commands split per slot,
// keyspace-wide commands sent to every master, and SCAN across masters.
#include <algorithm>
#include <map>

#include "protocol/resp.h"
#include "protocol/slot.h"
#include "protocol/strings.h"
#include "proxy/dispatcher.h"
#include "proxy/fanout.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// SCAN cursors seen by clients: the lowest slot of the master being scanned in bits 39..52, that
// master's own cursor in the low 39 bits. Every cursor is at most 2^53 - 1, so a JavaScript
// client that keeps it as a Number (a double) gets it back exactly. A node cursor needs as many
// bits as its keyspace's hash table has buckets: 39 bits is half a trillion buckets. Masters are
// visited in order of their lowest slot, so a topology change never makes the scan skip a master
// that exists before and after it.
constexpr int kScanNodeBits = 39;
constexpr uint64_t kScanNodeMask = (uint64_t{1} << kScanNodeBits) - 1;
static_assert((uint64_t{protocol::kSlotCount - 1} << kScanNodeBits | kScanNodeMask) ==
                  (uint64_t{1} << 53) - 1,
              "the largest SCAN cursor must be the largest integer a double holds exactly");

// Lowest slot of every master in the worker's map, ascending.
std::vector<std::pair<uint16_t, uint16_t>> MastersByLowestSlot(const RoutingTable& table) {
  std::map<uint16_t, uint16_t> lowest;  // node -> lowest slot
  for (int s = protocol::kSlotCount - 1; s >= 0; --s) {
    uint16_t n = table.NodeForSlot(static_cast<uint16_t>(s));
    if (n != RoutingTable::kNoNode) lowest[n] = static_cast<uint16_t>(s);
  }
  std::vector<std::pair<uint16_t, uint16_t>> out;  // (lowest slot, node)
  for (auto [node, slot] : lowest) out.emplace_back(slot, node);
  std::sort(out.begin(), out.end());
  return out;
}

std::string MergeScan(const FanOut& fanout, std::string* error) {
  std::string_view reply = fanout.children()[0]->reply.view();
  if (reply.size() >= 3 && reply[0] == '-') {  // the node's own error (e.g. a bad COUNT)
    *error = std::string(reply.substr(1, reply.size() - 3));
    return "";
  }
  std::vector<std::string_view> parts;
  if (!protocol::SplitArrayElements(reply, &parts).ok() || parts.size() != 2) {
    *error = "ERR slotpilot: unexpected SCAN reply from a node";
    return "";
  }
  auto cursor_value = protocol::DecodeReply(parts[0]);
  uint64_t node_cursor = 0;
  if (!cursor_value.ok() || !ParseInt(cursor_value->str, &node_cursor) || node_cursor > kScanNodeMask) {
    *error = "ERR slotpilot: SCAN cursor from a node out of the proxy's range";
    return "";
  }
  uint64_t lowest = fanout.context & 0xFFFF;
  uint64_t next_lowest_plus1 = fanout.context >> 16;
  uint64_t cursor = 0;
  if (node_cursor != 0) {
    cursor = (lowest << kScanNodeBits) | node_cursor;
  } else if (next_lowest_plus1 != 0) {
    // Never 0 (which would end the scan): the next master's lowest slot is above this one's.
    cursor = (next_lowest_plus1 - 1) << kScanNodeBits;
  }
  std::string out;
  protocol::AppendArrayHeader(&out, 2);
  protocol::AppendBulk(&out, std::to_string(cursor));
  out.append(parts[1]);
  return out;
}

}  // namespace

Request* Dispatcher::NewChild(Request* parent, std::string_view bytes) {
  Request* child = worker_->NewRequest(nullptr);
  child->deadline_ms = parent->deadline_ms;
  child->command_class = parent->command_class;
  child->bytes = worker_->arena().Copy(bytes);
  return child;
}

void Dispatcher::SplitByKey(const CommandPolicy& policy, const protocol::CommandInfo& cmd,
                            absl::Span<const std::string_view> argv, Slice raw, Request* r) {
  keys_.clear();
  absl::Status st = protocol::GetKeyPositions(cmd, argv, &keys_);
  if (!st.ok()) return worker_->CompleteWithError(r, AsStd(st.message()));
  // MSET k v k: the arity table allows it (-3), Redis refuses it in the command itself.
  if (policy.key_value_pairs && argv.size() % 2 == 0) {
    return worker_->CompleteWithError(
        r, StrCat("ERR wrong number of arguments for '", cmd.full_name, "' command"));
  }
  // Group key positions by slot, keeping first-seen order of slots.
  std::vector<uint16_t> slot_order;
  std::map<uint16_t, std::vector<uint32_t>> groups;
  for (uint32_t pos : keys_) {
    uint16_t slot = protocol::KeyHashSlot(argv[pos]);
    auto [it, inserted] = groups.try_emplace(slot);
    if (inserted) slot_order.push_back(slot);
    it->second.push_back(pos);
  }
  if (groups.size() <= 1) {  // one slot: forward the original bytes as they are
    if (!groups.empty()) {
      r->keyed = true;
      r->slot = slot_order[0];
    }
    return Forward(r, argv, std::move(raw));
  }
  auto* fanout = new FanOut(r, policy.merge);
  r->group.reset(fanout);
  std::map<uint16_t, uint32_t> child_of_slot;
  std::vector<Request*> children;
  std::vector<std::string_view> child_argv;
  for (uint16_t slot : slot_order) {
    child_argv.assign(1, argv[0]);
    for (uint32_t pos : groups[slot]) {
      child_argv.push_back(argv[pos]);
      if (policy.key_value_pairs) child_argv.push_back(argv[pos + 1]);
    }
    scratch_.clear();
    protocol::AppendCommand(&scratch_, child_argv);
    Request* child = NewChild(r, scratch_);
    child->keyed = true;
    child->slot = slot;
    child_of_slot[slot] = static_cast<uint32_t>(children.size());
    fanout->AddChild(worker_, child);
    children.push_back(child);
  }
  std::map<uint16_t, uint32_t> next_element;
  for (uint32_t pos : keys_) {
    uint16_t slot = protocol::KeyHashSlot(argv[pos]);
    fanout->MapKey(child_of_slot[slot], next_element[slot]++);
  }
  worker_->TrackDeadline(r);
  for (Request* child : children) worker_->follower().router().Route(child);
}

void Dispatcher::SendToAllMasters(const CommandPolicy& policy,
                                  absl::Span<const std::string_view> argv, Slice raw, Request* r) {
  const std::vector<uint16_t>& masters = worker_->routing().masters();
  if (masters.empty()) {
    return worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
  }
  if (raw.empty()) {
    scratch_.clear();
    protocol::AppendCommand(&scratch_, argv);
    raw = worker_->arena().Copy(scratch_);
  }
  auto* fanout = new FanOut(r, policy.merge);
  r->group.reset(fanout);
  if (policy.merge == MergeKind::kAndIntegers && worker_->shared().scripts != nullptr) {
    fanout->scripts = worker_->shared().scripts;  // SCRIPT EXISTS
    fanout->script_shas.assign(argv.begin() + std::min<size_t>(2, argv.size()), argv.end());
  }
  std::vector<Request*> children;
  for (uint16_t node : masters) {
    Request* child = worker_->NewRequest(nullptr);
    child->deadline_ms = r->deadline_ms;
    child->command_class = r->command_class;
    child->bytes = raw;  // every master gets the same bytes
    child->target_node = node;
    if (policy.own_connections) {
      const RoutingTable::Node& n = worker_->routing().node(node);
      auto connection = std::make_unique<Upstream>(worker_, node, n.host, n.port, Upstream::Role::kDedicated);
      child->via = connection.get();
      fanout->OwnConnection(std::move(connection));
    }
    fanout->AddChild(worker_, child);
    children.push_back(child);
  }
  worker_->TrackDeadline(r);
  for (Request* child : children) worker_->follower().router().Route(child);
}

// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the master the cursor names scans.
void Dispatcher::Scan(absl::Span<const std::string_view> argv, Request* r) {
  uint64_t cursor = 0;
  if (!ParseInt(argv[1], &cursor)) return worker_->CompleteWithError(r, "ERR invalid cursor");
  auto masters = MastersByLowestSlot(worker_->routing());
  if (masters.empty()) {
    return worker_->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
  }
  uint64_t want_slot = cursor >> kScanNodeBits;
  uint64_t node_cursor = cursor & kScanNodeMask;
  // The master whose lowest slot is the cursor's, or the first one after it.
  size_t i = 0;
  while (i < masters.size() && masters[i].first < want_slot) ++i;
  if (i == masters.size()) {  // every master is done (or the cursor is stale): end the scan
    std::string done = "*2\r\n$1\r\n0\r\n*0\r\n";
    return worker_->Complete(r, worker_->arena().Copy(done), false);
  }
  if (masters[i].first != want_slot) node_cursor = 0;  // that master is gone: start the next one
  std::vector<std::string_view> child_argv(argv.begin(), argv.end());
  std::string node_cursor_text = std::to_string(node_cursor);
  child_argv[1] = node_cursor_text;
  scratch_.clear();
  protocol::AppendCommand(&scratch_, child_argv);
  auto* fanout = new FanOut(r, MergeKind::kCustom);
  r->group.reset(fanout);
  fanout->SetCustomMerge(MergeScan);
  uint64_t next_plus1 = i + 1 < masters.size() ? masters[i + 1].first + 1u : 0;
  fanout->context = masters[i].first | (next_plus1 << 16);
  Request* child = NewChild(r, scratch_);
  child->target_node = masters[i].second;
  fanout->AddChild(worker_, child);
  worker_->TrackDeadline(r);
  worker_->follower().router().Route(child);
}

}  // namespace slotpilot::proxy
