// MULTI / EXEC / DISCARD / WATCH / UNWATCH for one client, on a connection pinned to the node of
// the transaction's slot.
//
// MULTI is answered at once and the commands are queued here (+QUEUED, or the error Redis gives at
// queue time, which makes EXEC abort) until EXEC; then MULTI, the commands and EXEC go to the
// node in one write and the client gets the node's EXEC reply, exactly as Redis sends it. WATCH
// pins the connection at once (the watch lives on that connection). All keys must share one slot,
// like a cluster node demands (-CROSSSLOT at queue time).
//
// Redirects: ASK on a queued command re-runs the transaction on the ASK target with ASKING before
// MULTI (one ASKING covers the whole transaction); MOVED updates the slot map and re-runs it on the
// owner when nothing is watched (the aborted run executed nothing), else the EXECABORT is passed
// on. Loop thread only; owned by its ClientSession.
#ifndef SLOTPILOT_PROXY_TRANSACTION_H_
#define SLOTPILOT_PROXY_TRANSACTION_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/types/span.h"
#include "protocol/command_table.h"
#include "proxy/buffer.h"
#include "proxy/command_policy.h"
#include "proxy/request.h"

namespace slotpilot::proxy {

class ClientSession;
class Upstream;
class Worker;

class Transaction {
 public:
  Transaction(Worker* worker, ClientSession* session);
  ~Transaction();

  bool in_multi() const { return in_multi_; }
  size_t queued_count() const { return queued_.size(); }
  bool watching() const { return !watch_commands_.empty(); }
  bool active() const { return in_multi_ || watching(); }

  void Multi(Request* r);
  void Exec(Request* r);
  void Discard(Request* r);
  void Watch(absl::Span<const std::string_view> argv, const protocol::CommandInfo& cmd, Slice raw, Request* r);
  void Unwatch(Request* r);
  // A command while in MULTI: validated like a node would at queue time, then queued.
  void Queue(const protocol::CommandInfo& cmd, const CommandPolicy& policy,
             absl::Span<const std::string_view> argv, Slice raw, Request* r);
  // A command rejected before queueing (unknown command, wrong arity): EXEC will abort.
  void MarkDirty() { dirty_ = true; }
  // Forgets everything (RESET, client gone).
  void Reset();

  // Used by TransactionRun.
  Upstream* PinTo(uint16_t node);
  // EXEC ran: the queued EVALs' bodies are in every-master reach now (ScriptCache).
  void RememberScripts(std::string_view exec_reply);
  uint16_t node() const { return node_; }

 private:
  friend class TransactionRun;
  bool SlotOf(const protocol::CommandInfo& cmd, absl::Span<const std::string_view> argv,
              int32_t* slot, Request* r);
  void ReplyLocal(Request* r, std::string_view bytes);
  void Unpin();
  uint16_t NodeForExec() const;
  std::vector<Slice> ExecCommands() const;  // MULTI, the queued commands, EXEC

  Worker* worker_;
  ClientSession* session_;
  bool in_multi_ = false;
  bool dirty_ = false;
  int32_t slot_ = -1;                  // fixed by the first keyed command or WATCH
  std::vector<Slice> queued_;          // commands between MULTI and EXEC
  std::vector<std::pair<size_t, std::string>> queued_script_bodies_;  // queued EVALs: index, body
  size_t queued_bytes_ = 0;
  std::vector<Slice> watch_commands_;  // WATCHes sent on the pinned connection (replayed on MOVED)
  std::unique_ptr<Upstream> conn_;     // pinned connection
  uint16_t node_ = 0;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_TRANSACTION_H_
