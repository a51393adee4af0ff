#include "tests/support/test_cluster.h"

#include <signal.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <sstream>
#include <thread>

#include "protocol/slot.h"
#include "protocol/strings.h"

namespace slotpilot::testing {
namespace {

using migration::RedisClient;
using protocol::RespValue;

constexpr uint32_t kUnhealthyFlags =
    protocol::kFlagFail | protocol::kFlagPfail | protocol::kFlagHandshake;

absl::StatusOr<RespValue> Send(RedisClient* client, const std::vector<std::string>& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  return client->Command(absl::MakeConstSpan(views));
}

std::string Join(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) StrAppend(&out, out.empty() ? "" : " ", a);
  return out;
}

// Owner id of every slot in one node's parsed CLUSTER NODES ("" = unassigned).
std::vector<std::string> OwnersOf(const std::vector<protocol::ClusterNode>& nodes) {
  std::vector<std::string> owners(protocol::kSlotCount);
  for (const protocol::ClusterNode& n : nodes) {
    for (const protocol::SlotRange& r : n.slots) {
      for (int s = r.first; s <= r.last; ++s) owners[s] = n.id;
    }
  }
  return owners;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestCluster>> TestCluster::Start(TestClusterOptions options) {
  if (options.masters < 1 || options.masters > 16) {
    return absl::InvalidArgumentError("masters must be in 1..16");
  }
  std::unique_ptr<TestCluster> cluster(new TestCluster());
  absl::Status built = cluster->Build(options);
  if (!built.ok()) return built;
  return cluster;
}

absl::StatusOr<int> TestCluster::StartNode() {
  auto server = RedisServer::Start(server_options_);
  if (!server.ok()) return server.status();
  const int i = size();
  nodes_.emplace_back();
  nodes_[i].port = (*server)->port();
  nodes_[i].server = *std::move(server);
  auto myid = Must(i, {"CLUSTER", "MYID"});
  if (!myid.ok()) return myid.status();
  nodes_[i].id = myid->str;
  return i;
}

absl::Status TestCluster::Build(const TestClusterOptions& options) {
  server_options_.cluster_enabled = true;
  server_options_.extra_args = options.extra_args;
  if (std::find(options.extra_args.begin(), options.extra_args.end(), "--cluster-node-timeout") ==
      options.extra_args.end()) {
    server_options_.extra_args.push_back("--cluster-node-timeout");
    server_options_.extra_args.push_back(std::to_string(options.cluster_node_timeout_ms));
  }
  // A replica's first sync would otherwise wait repl-diskless-sync-delay (5 s) for more replicas.
  for (const char* a : {"--repl-diskless-sync-delay", "0"}) server_options_.extra_args.push_back(a);
  masters_ = options.masters;
  for (int i = 0; i < masters_; ++i) {
    auto started = StartNode();
    if (!started.ok()) return started.status();
    // Distinct config epochs up front, as redis-cli --cluster create does.
    auto epoch = Must(i, {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)});
    if (!epoch.ok()) return epoch.status();
  }
  for (int i = 1; i < masters_; ++i) {
    auto meet = Must(0, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i))});
    if (!meet.ok()) return meet.status();
  }
  for (int i = 0; i < masters_; ++i) {
    protocol::SlotRange r = InitialRange(i);
    auto add =
        Must(i, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(r.first), std::to_string(r.last)});
    if (!add.ok()) return add.status();
  }
  return WaitForAgreement(options.ready_timeout);
}

TestCluster::~TestCluster() {
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].server != nullptr) kill(nodes_[i].server->pid(), SIGCONT);  // in case paused
    nodes_[i].client.reset();
    nodes_[i].server.reset();
  }
}

migration::Endpoint TestCluster::endpoint(int i) const {
  return migration::Endpoint{"127.0.0.1", static_cast<uint16_t>(port(i))};
}

std::string TestCluster::address(int i) const { return StrCat("127.0.0.1:", port(i)); }

std::vector<migration::Endpoint> TestCluster::Seeds() const {
  std::vector<migration::Endpoint> seeds;
  for (int i = 0; i < size(); ++i) seeds.push_back(endpoint(i));
  return seeds;
}

absl::StatusOr<int> TestCluster::AddReplica(int master, std::chrono::milliseconds timeout) {
  if (master < 0 || master >= masters_) return absl::InvalidArgumentError("not a master index");
  auto started = StartNode();
  if (!started.ok()) return started.status();
  const int r = *started;
  auto meet = Must(0, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(r))});
  if (!meet.ok()) return meet.status();
  // REPLICATE needs the new node to know the master: wait for the handshake to finish.
  const bool knows = WaitUntil(
      [&] {
        auto nodes = Must(r, {"CLUSTER", "NODES"});
        return nodes.ok() && nodes->str.find(id(master)) != std::string::npos &&
               nodes->str.find("handshake") == std::string::npos;
      },
      timeout);
  if (!knows) return absl::DeadlineExceededError("new node never learned the master");
  auto replicate = Must(r, {"CLUSTER", "REPLICATE", id(master)});
  if (!replicate.ok()) return replicate.status();
  const bool linked = WaitUntil(
      [&] {
        auto info = Must(r, {"INFO", "replication"});
        return info.ok() && info->str.find("master_link_status:up") != std::string::npos;
      },
      timeout);
  if (!linked) return absl::DeadlineExceededError("replication link never came up");
  absl::Status agreed = WaitForAgreement(timeout);
  if (!agreed.ok()) return agreed;
  return r;
}

protocol::SlotRange TestCluster::InitialRange(int i) const {
  const int n = masters_;
  const int first = protocol::kSlotCount * i / n;
  const int last = protocol::kSlotCount * (i + 1) / n - 1;
  return protocol::SlotRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

int TestCluster::IndexOfId(std::string_view id) const {
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].id == id) return i;
  }
  return -1;
}

absl::StatusOr<RedisClient*> TestCluster::client(int i) {
  if (i < 0 || i >= size()) return absl::InvalidArgumentError(StrCat("no node ", i));
  Node& node = nodes_[i];
  if (node.server == nullptr) return absl::UnavailableError(StrCat("node ", i, " is stopped"));
  if (node.client == nullptr || !node.client->ok()) {
    auto fresh = Connect(i);
    if (!fresh.ok()) return fresh.status();
    node.client = *std::move(fresh);
  }
  return node.client.get();
}

absl::StatusOr<std::unique_ptr<RedisClient>> TestCluster::Connect(int i) const {
  migration::RedisClientOptions options;
  options.connect_timeout = std::chrono::milliseconds(1000);
  options.command_timeout = std::chrono::milliseconds(5000);
  return RedisClient::Connect("127.0.0.1", port(i), options);
}

void TestCluster::StopNode(int i) {
  if (nodes_[i].server == nullptr) return;
  kill(nodes_[i].server->pid(), SIGCONT);
  nodes_[i].client.reset();
  nodes_[i].server.reset();
}

absl::Status TestCluster::PauseNode(int i) {
  if (nodes_[i].server == nullptr) return absl::FailedPreconditionError("node stopped");
  if (kill(nodes_[i].server->pid(), SIGSTOP) != 0) return absl::InternalError("SIGSTOP failed");
  return absl::OkStatus();
}

absl::Status TestCluster::ResumeNode(int i) {
  if (nodes_[i].server == nullptr) return absl::FailedPreconditionError("node stopped");
  if (kill(nodes_[i].server->pid(), SIGCONT) != 0) return absl::InternalError("SIGCONT failed");
  return absl::OkStatus();
}

absl::StatusOr<RespValue> TestCluster::Command(int i, const std::vector<std::string>& args) {
  auto c = client(i);
  if (!c.ok()) return c.status();
  return Send(*c, args);
}

absl::StatusOr<RespValue> TestCluster::Must(int i, const std::vector<std::string>& args) {
  auto reply = Command(i, args);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) {
    return absl::FailedPreconditionError(
        AsAbsl(StrCat(address(i), ": ", Join(args), ": ", reply->str)));
  }
  return reply;
}

absl::StatusOr<int> TestCluster::OwnerOf(uint16_t slot, int view) {
  auto text = Must(view, {"CLUSTER", "NODES"});
  if (!text.ok()) return text.status();
  auto nodes = protocol::ParseClusterNodes(text->str);
  if (!nodes.ok()) return nodes.status();
  for (const protocol::ClusterNode& n : *nodes) {
    for (const protocol::SlotRange& r : n.slots) {
      if (slot >= r.first && slot <= r.last) return IndexOfId(n.id);
    }
  }
  return -1;
}

absl::Status TestCluster::SetMigrating(int node, uint16_t slot, int destination) {
  return Must(node, {"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", id(destination)})
      .status();
}

absl::Status TestCluster::SetImporting(int node, uint16_t slot, int source) {
  return Must(node, {"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", id(source)}).status();
}

absl::Status TestCluster::SetStable(int node, uint16_t slot) {
  return Must(node, {"CLUSTER", "SETSLOT", std::to_string(slot), "STABLE"}).status();
}

absl::Status TestCluster::SetNode(int node, uint16_t slot, int owner) {
  return Must(node, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", id(owner)}).status();
}

absl::Status TestCluster::AddSlot(int node, uint16_t slot) {
  return Must(node, {"CLUSTER", "ADDSLOTS", std::to_string(slot)}).status();
}

absl::Status TestCluster::DelSlot(int node, uint16_t slot) {
  return Must(node, {"CLUSTER", "DELSLOTS", std::to_string(slot)}).status();
}

bool TestCluster::IsMaster(int i) {
  auto text = Must(i, {"CLUSTER", "NODES"});
  if (!text.ok()) return false;
  auto nodes = protocol::ParseClusterNodes(text->str);
  if (!nodes.ok()) return false;
  for (const protocol::ClusterNode& n : *nodes) {
    if (n.has(protocol::kFlagMyself)) return n.has(protocol::kFlagMaster);
  }
  return false;
}

absl::Status TestCluster::StabilizeSlot(uint16_t slot) {
  for (int i = 0; i < size(); ++i) {
    if (!running(i) || !IsMaster(i)) continue;
    absl::Status s = SetStable(i, slot);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TestCluster::ResetSlot(uint16_t slot, int owner) {
  absl::Status s = StabilizeSlot(slot);
  if (!s.ok()) return s;
  for (int i = 0; i < size(); ++i) {
    if (i == owner || !running(i) || !IsMaster(i)) continue;
    auto keys = CountKeys(i, slot);
    if (!keys.ok()) return keys.status();
    if (*keys == 0) continue;
    if (s = SetImporting(i, slot, owner); !s.ok()) return s;
    for (int round = 0; round < 10000; ++round) {
      auto moved = MigrateKeys(i, owner, slot, 100);
      if (!moved.ok()) return moved.status();
      if (*moved == 0) break;
    }
    if (s = SetStable(i, slot); !s.ok()) return s;
  }
  auto claimed = OwnerOf(slot, owner);
  if (!claimed.ok()) return claimed.status();
  if (*claimed != owner) {
    return absl::FailedPreconditionError(
        AsAbsl(StrCat(address(owner), " does not claim slot ", slot, " in its own view")));
  }
  return absl::OkStatus();
}

const std::string& TestCluster::HashTagFor(uint16_t slot) {
  static std::once_flag once;
  static std::vector<std::string>* tags = nullptr;
  std::call_once(once, [] {
    tags = new std::vector<std::string>(protocol::kSlotCount);
    int missing = protocol::kSlotCount;
    for (uint64_t n = 0; missing > 0; ++n) {
      std::string tag = StrCat("t", n);
      std::string& entry = (*tags)[protocol::KeyHashSlot(tag)];
      if (entry.empty()) {
        entry = std::move(tag);
        --missing;
      }
    }
  });
  return (*tags)[slot];
}

std::string TestCluster::KeyInSlot(uint16_t slot, int i) {
  return StrCat("{", HashTagFor(slot), "}:", i);
}

absl::Status TestCluster::WriteKeys(int node, uint16_t slot, int first, int n, size_t value_size,
                                    bool asking) {
  auto c = client(node);
  if (!c.ok()) return c.status();
  const std::string value(value_size, 'v');
  constexpr int kBatch = 200;
  for (int done = 0; done < n; done += kBatch) {
    std::vector<std::vector<std::string>> commands;
    for (int k = done; k < std::min(n, done + kBatch); ++k) {
      if (asking) commands.push_back({"ASKING"});
      commands.push_back({"SET", KeyInSlot(slot, first + k), value});
    }
    auto replies = (*c)->Pipeline(commands);
    if (!replies.ok()) return replies.status();
    for (const RespValue& r : *replies) {
      if (r.is_error()) {
        return absl::FailedPreconditionError(AsAbsl(StrCat(address(node), ": SET: ", r.str)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status TestCluster::FillSlot(uint16_t slot, int n, size_t value_size) {
  int owner = -1;
  for (int i = 0; i < size() && owner < 0; ++i) {
    if (!running(i)) continue;
    auto o = OwnerOf(slot, i);
    if (o.ok() && *o == i) owner = i;  // the node that claims it for itself
  }
  if (owner < 0) return absl::FailedPreconditionError(AsAbsl(StrCat("no node claims slot ", slot)));
  return WriteKeys(owner, slot, 0, n, value_size);
}

absl::StatusOr<int64_t> TestCluster::CountKeys(int node, uint16_t slot) {
  auto r = Must(node, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)});
  if (!r.ok()) return r.status();
  return r->integer;
}

absl::StatusOr<int> TestCluster::MigrateKeys(int src, int dst, uint16_t slot, int n,
                                             RedisClient* on) {
  if (on == nullptr) {
    auto c = client(src);
    if (!c.ok()) return c.status();
    on = *c;
  }
  auto keys = Send(on, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), std::to_string(n)});
  if (!keys.ok()) return keys.status();
  if (keys->is_error()) return absl::FailedPreconditionError(AsAbsl(keys->str));
  if (keys->elements.empty()) return 0;
  std::vector<std::string> migrate = {"MIGRATE", "127.0.0.1", std::to_string(port(dst)), "", "0",
                                      "5000",    "KEYS"};
  for (const RespValue& k : keys->elements) migrate.push_back(k.str);
  auto reply = Send(on, migrate);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) {
    return absl::FailedPreconditionError(AsAbsl(StrCat(address(src), ": MIGRATE: ", reply->str)));
  }
  return static_cast<int>(keys->elements.size());
}

bool TestCluster::WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                            std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

bool TestCluster::Agreed(std::string* why) {
  std::string reason;
  std::vector<std::string> reference;
  int running_nodes = 0;
  for (int i = 0; i < size(); ++i) running_nodes += running(i) ? 1 : 0;
  for (int i = 0; i < size() && reason.empty(); ++i) {
    if (!running(i)) continue;
    auto info = Must(i, {"CLUSTER", "INFO"});
    if (!info.ok()) {
      reason = std::string(info.status().message());
      break;
    }
    if (info->str.find("cluster_state:ok") == std::string::npos) {
      reason = StrCat(address(i), " cluster_state is not ok");
      break;
    }
    auto text = Must(i, {"CLUSTER", "NODES"});
    auto nodes = text.ok() ? protocol::ParseClusterNodes(text->str)
                           : absl::StatusOr<std::vector<protocol::ClusterNode>>(text.status());
    if (!nodes.ok()) {
      reason = std::string(nodes.status().message());
      break;
    }
    if (static_cast<int>(nodes->size()) != size()) {
      reason = StrCat(address(i), " knows ", nodes->size(), " nodes, want ", size());
      break;
    }
    for (const protocol::ClusterNode& n : *nodes) {
      const int idx = IndexOfId(n.id);
      if (idx < 0) reason = StrCat(address(i), " knows a foreign node ", n.id);
      // A stopped node is expected to be flagged; running ones must be clean.
      if (idx >= 0 && running(idx) && (n.flags & kUnhealthyFlags) != 0) {
        reason = StrCat(address(i), " flags ", address(idx), " fail/fail?/handshake");
      }
    }
    std::vector<std::string> owners = OwnersOf(*nodes);
    if (reference.empty()) {
      reference = std::move(owners);
    } else if (owners != reference) {
      reason = StrCat(address(i), " disagrees about slot owners");
    }
  }
  if (why != nullptr) *why = reason;
  return reason.empty() && running_nodes > 0;
}

absl::Status TestCluster::WaitForAgreement(std::chrono::milliseconds timeout) {
  std::string why;
  if (WaitUntil([&] { return Agreed(&why); }, timeout)) return absl::OkStatus();
  return absl::DeadlineExceededError(AsAbsl(StrCat("cluster did not settle: ", why)));
}

absl::StatusOr<std::string> TestCluster::StableNodesText(int i) {
  auto text = Must(i, {"CLUSTER", "NODES"});
  if (!text.ok()) return text.status();
  std::vector<std::string> lines;
  std::istringstream in(text->str);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string field;
    while (fields >> field) f.push_back(field);
    if (f.size() < 8) continue;
    // Keep id, address, flags, master, config-epoch and the slots; drop ping-sent, pong-recv
    // and link-state, which change by themselves.
    std::string kept = StrCat(f[0], " ", f[1], " ", f[2], " ", f[3], " ", f[6]);
    for (size_t k = 8; k < f.size(); ++k) StrAppend(&kept, " ", f[k]);
    lines.push_back(std::move(kept));
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& l : lines) StrAppend(&out, l, "\n");
  return out;
}

absl::StatusOr<std::string> TestCluster::StableClusterText() {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    auto text = StableNodesText(i);
    if (!text.ok()) return text.status();
    StrAppend(&out, "== ", address(i), "\n", *text);
  }
  return out;
}

}  // namespace slotpilot::testing
