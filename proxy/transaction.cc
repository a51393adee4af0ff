#include "proxy/transaction.h"

#include <string>

#include "protocol/errors.h"
#include "protocol/resp.h"
#include "protocol/slot.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/sub_requests.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

constexpr std::string_view kMulti = "*1\r\n$5\r\nMULTI\r\n";
constexpr std::string_view kExec = "*1\r\n$4\r\nEXEC\r\n";
constexpr int kMaxRuns = 4;  // first run plus redirect retries

bool IsRedirect(const Slice& reply, protocol::ErrorKind kind) {
  std::string_view v = reply.view();
  if (v.size() < 3 || v[0] != '-') return false;
  return protocol::ClassifyError(v.substr(1, v.size() - 3)) == kind;
}

}  // namespace

// Runs a list of commands on the transaction's pinned connection and answers the parent with
// the last command's reply, re-running on the right node after ASK (and MOVED, when allowed).
class TransactionRun : public SubRequests {
 public:
  enum class Kind { kExec, kWatch };
  TransactionRun(Worker* worker, Transaction* tx, Request* parent, Kind kind)
      : worker_(worker), tx_(tx), parent_(parent), kind_(kind) {}

  void Start(std::vector<Slice> commands, bool asking) {
    Upstream* conn = tx_->conn_.get();
    for (Slice& bytes : commands) {
      Request* child = worker_->NewRequest(nullptr);
      child->deadline_ms = parent_->deadline_ms;
      child->bytes = std::move(bytes);
      child->via = conn;
      child->raw_errors = true;
      child->parent = parent_;
      child->child_index = static_cast<uint32_t>(children_.size());
      worker_->Retain(parent_);
      worker_->Retain(child);
      children_.push_back(child);
    }
    remaining_ = children_.size();
    if (asking && !children_.empty()) children_.front()->asking = true;
    ++runs_;
    std::vector<Request*> to_send = children_;
    for (Request* child : to_send) conn->Send(child);
  }

  void OnChildDone(Worker*, Request*) override {
    if (remaining_ == 0 || --remaining_ > 0) return;
    if (parent_->abandoned()) return Abandon(worker_);  // the client is gone: tx_ may be too
    if (Rerun()) return;
    Slice reply = children_.back()->reply;
    bool is_error = !reply.empty() && reply.data()[0] == '-';
    Request* parent = parent_;
    Transaction* tx = tx_;
    Kind kind = kind_;
    Abandon(worker_);
    if (kind == Kind::kExec) {
      if (!is_error) tx->RememberScripts(reply.view());  // EXEC ran them
      tx->Reset();  // EXEC ends the transaction, whatever its outcome
    }
    worker_->Complete(parent, std::move(reply), is_error);
  }

  void Abandon(Worker*) override {
    std::vector<Request*> children = std::move(children_);
    children_.clear();
    remaining_ = 0;
    for (Request* c : children) worker_->Release(c);
  }

 private:
  // After ASK or MOVED on a queued command: re-run on the node that serves the slot, if allowed.
  bool Rerun() {
    if (runs_ >= kMaxRuns) return false;
    // EXEC's own reply is never a redirect worth following; a WATCH's is.
    size_t examined = kind_ == Kind::kExec ? children_.size() - 1 : children_.size();
    for (size_t i = 0; i < examined; ++i) {
      const Slice& reply = children_[i]->reply;
      bool ask = IsRedirect(reply, protocol::ErrorKind::kAsk);
      bool moved = IsRedirect(reply, protocol::ErrorKind::kMoved);
      if (!ask && !moved) continue;
      std::string_view v = reply.view();
      absl::StatusOr<protocol::Redirect> redirect = protocol::ParseRedirect(v.substr(1, v.size() - 3));
      if (!redirect.ok() || redirect->endpoint_unknown()) return false;
      RoutingTable& table = worker_->routing();
      std::string_view host = redirect->endpoint_is_same_host()
                                  ? std::string_view(table.node(tx_->node()).host)
                                  : redirect->host;
      uint16_t target = table.FindOrAddNode(host, redirect->port);
      if (target == RoutingTable::kNoNode) return false;
      if (moved) {
        table.SetSlot(redirect->slot, target);
        worker_->RequestTopologyRefresh("MOVED in a transaction");
      }
      // A watch lives on the old connection: with one, only a WATCH itself may move.
      if (kind_ == Kind::kExec && tx_->watching()) return false;
      if (ask && kind_ == Kind::kWatch) return false;
      Abandon(worker_);
      tx_->Unpin();
      tx_->PinTo(target);
      Start(kind_ == Kind::kExec ? tx_->ExecCommands() : tx_->watch_commands_, /*asking=*/ask);
      return true;
    }
    return false;
  }

  Worker* worker_;
  Transaction* tx_;
  Request* parent_;
  Kind kind_;
  std::vector<Request*> children_;
  size_t remaining_ = 0;
  int runs_ = 0;
};

Transaction::Transaction(Worker* worker, ClientSession* session)
    : worker_(worker), session_(session) {}

Transaction::~Transaction() { Unpin(); }

void Transaction::ReplyLocal(Request* r, std::string_view bytes) {
  worker_->Complete(r, worker_->arena().Copy(bytes), !bytes.empty() && bytes[0] == '-');
}

void Transaction::RememberScripts(std::string_view exec_reply) {
  ScriptCache* scripts = worker_->shared().scripts;
  if (scripts == nullptr || queued_script_bodies_.empty()) return;
  std::vector<std::string_view> results;  // one per queued command; nil when a WATCH aborted it
  if (!protocol::SplitArrayElements(exec_reply, &results).ok() || results.size() != queued_.size()) {
    return;
  }
  for (const auto& [index, body] : queued_script_bodies_) {
    // Redis caches a body it compiled, whether or not the script then failed.
    if (results[index].substr(0, 27) != "-ERR Error compiling script") scripts->Remember(body);
  }
}

void Transaction::Reset() {
  queued_script_bodies_.clear();
  in_multi_ = false;
  dirty_ = false;
  slot_ = -1;
  queued_.clear();
  queued_bytes_ = 0;
  watch_commands_.clear();
  Unpin();
}

Upstream* Transaction::PinTo(uint16_t node) {
  if (conn_ != nullptr && node_ == node) return conn_.get();
  Unpin();
  const RoutingTable::Node& n = worker_->routing().node(node);
  conn_ = std::make_unique<Upstream>(worker_, node, n.host, n.port, Upstream::Role::kDedicated);
  node_ = node;
  return conn_.get();
}

void Transaction::Unpin() {
  if (conn_ != nullptr) worker_->RetireUpstream(std::move(conn_));
}

std::vector<Slice> Transaction::ExecCommands() const {
  std::vector<Slice> commands;
  commands.reserve(queued_.size() + 2);
  commands.push_back(Slice::Static(kMulti));
  commands.insert(commands.end(), queued_.begin(), queued_.end());
  commands.push_back(Slice::Static(kExec));
  return commands;
}

// The slot of a command's keys; answers r with CROSSSLOT (returning false) when they span slots
// or differ from the transaction's slot. *slot = -1 for a keyless command.
bool Transaction::SlotOf(const protocol::CommandInfo& cmd, absl::Span<const std::string_view> argv,
                         int32_t* slot, Request* r) {
  protocol::KeyPositions keys;
  absl::Status st = protocol::GetKeyPositions(cmd, argv, &keys, /*include_not_keys=*/true);
  if (!st.ok()) {
    worker_->CompleteWithError(r, AsStd(st.message()));
    return false;
  }
  *slot = -1;
  for (uint32_t pos : keys) {
    int32_t s = protocol::KeyHashSlot(argv[pos]);
    if ((*slot != -1 && s != *slot) || (slot_ != -1 && s != slot_)) {
      worker_->CompleteWithError(r, "CROSSSLOT Keys in request don't hash to the same slot");
      return false;
    }
    *slot = s;
  }
  return true;
}

void Transaction::Multi(Request* r) {
  if (in_multi_) return worker_->CompleteWithError(r, "ERR MULTI calls can not be nested");
  in_multi_ = true;
  ReplyLocal(r, "+OK\r\n");
}

void Transaction::Queue(const protocol::CommandInfo& cmd, const CommandPolicy& policy,
                        absl::Span<const std::string_view> argv, Slice raw, Request* r) {
  if (policy.route == CommandRoute::kForbidden || policy.route == CommandRoute::kUnsupported) {
    dirty_ = true;
    return worker_->CompleteWithError(r, policy.error);
  }
  int32_t slot = -1;
  if (!SlotOf(cmd, argv, &slot, r)) {
    dirty_ = true;
    return;
  }
  if (raw.empty()) {
    std::string encoded;
    protocol::AppendCommand(&encoded, argv);
    raw = worker_->arena().Copy(encoded);
  }
  queued_bytes_ += raw.size();
  if (queued_bytes_ > worker_->options().client_max_input_bytes) {
    dirty_ = true;
    return worker_->CompleteWithError(r, "ERR slotpilot: transaction exceeds client-max-input-bytes");
  }
  if (slot != -1) slot_ = slot;
  if ((cmd.full_name == "eval" || cmd.full_name == "eval_ro") && argv.size() > 1) {
    queued_script_bodies_.emplace_back(queued_.size(), std::string(argv[1]));
  }
  queued_.push_back(std::move(raw));
  ReplyLocal(r, "+QUEUED\r\n");
}

uint16_t Transaction::NodeForExec() const {
  if (conn_ != nullptr) return node_;
  if (slot_ != -1) return worker_->routing().NodeForSlot(static_cast<uint16_t>(slot_));
  const auto& masters = worker_->routing().masters();
  return masters.empty() ? RoutingTable::kNoNode : masters.front();
}

void Transaction::Exec(Request* r) {
  if (!in_multi_) return worker_->CompleteWithError(r, "ERR EXEC without MULTI");
  if (dirty_) {
    Reset();
    return worker_->CompleteWithError(r, "EXECABORT Transaction discarded because of previous errors.");
  }
  uint16_t node = NodeForExec();
  if (node == RoutingTable::kNoNode) {
    Reset();
    return worker_->CompleteWithError(r, "CLUSTERDOWN Hash slot not served");
  }
  PinTo(node);
  auto* run = new TransactionRun(worker_, this, r, TransactionRun::Kind::kExec);
  r->group.reset(run);
  worker_->TrackDeadline(r);
  run->Start(ExecCommands(), /*asking=*/false);
}

void Transaction::Discard(Request* r) {
  if (!in_multi_) return worker_->CompleteWithError(r, "ERR DISCARD without MULTI");
  Reset();  // closing the pinned connection also forgets its watches, as DISCARD does
  ReplyLocal(r, "+OK\r\n");
}

void Transaction::Watch(absl::Span<const std::string_view> argv, const protocol::CommandInfo& cmd,
                        Slice raw, Request* r) {
  if (in_multi_) return worker_->CompleteWithError(r, "ERR WATCH inside MULTI is not allowed");
  int32_t slot = -1;
  if (!SlotOf(cmd, argv, &slot, r)) return;
  uint16_t node = worker_->routing().NodeForSlot(static_cast<uint16_t>(slot));
  if (node == RoutingTable::kNoNode) return worker_->CompleteWithError(r, "CLUSTERDOWN Hash slot not served");
  if (raw.empty()) {
    std::string encoded;
    protocol::AppendCommand(&encoded, argv);
    raw = worker_->arena().Copy(encoded);
  }
  slot_ = slot;
  if (conn_ == nullptr) PinTo(node);
  watch_commands_.push_back(raw);
  auto* run = new TransactionRun(worker_, this, r, TransactionRun::Kind::kWatch);
  r->group.reset(run);
  worker_->TrackDeadline(r);
  run->Start({raw}, /*asking=*/false);
}

void Transaction::Unwatch(Request* r) {
  watch_commands_.clear();
  if (!in_multi_) {
    slot_ = -1;
    Unpin();  // the server forgets the watches with the connection
  }
  ReplyLocal(r, "+OK\r\n");
}

}  // namespace slotpilot::proxy
