// Turns each framed client command into a Request: resolves the command (with Redis's own error
// texts for unknown commands and wrong arity), enforces AUTH, answers proxy-served commands,
// refuses forbidden ones, computes the slot of keyed commands (CROSSSLOT like a cluster node) and
// hands the request to the Router. Loop thread only.
#ifndef SLOTPILOT_PROXY_DISPATCHER_H_
#define SLOTPILOT_PROXY_DISPATCHER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/types/span.h"
#include "protocol/command_table.h"
#include "proxy/buffer.h"
#include "proxy/command_policy.h"
#include "proxy/request.h"

namespace slotpilot::proxy {

class ClientSession;
class Worker;

class Dispatcher {
 public:
  explicit Dispatcher(Worker* worker) : worker_(worker) {}

  // `raw` holds the request's original RESP bytes (empty for inline commands, re-encoded here).
  void Dispatch(ClientSession* session, absl::Span<const std::string_view> argv, Slice raw);

 private:
  bool ComputeSlot(const protocol::CommandInfo& cmd, absl::Span<const std::string_view> argv,
                   Request* r);
  void Forward(Request* r, absl::Span<const std::string_view> argv, Slice raw);
  // Fan-out (dispatcher_fanout.cc).
  void SplitByKey(const CommandPolicy& policy, const protocol::CommandInfo& cmd,
                  absl::Span<const std::string_view> argv, Slice raw, Request* r);
  void SendToAllMasters(const CommandPolicy& policy, absl::Span<const std::string_view> argv,
                        Slice raw, Request* r);
  void Scan(absl::Span<const std::string_view> argv, Request* r);
  Request* NewChild(Request* parent, std::string_view bytes);
  void RunLocal(ClientSession* session, LocalCommand command, const protocol::CommandInfo& cmd,
                absl::Span<const std::string_view> argv, Slice raw, Request* r);
  bool RunTransactionOrPubSub(ClientSession* session, LocalCommand command,
                              const protocol::CommandInfo& cmd,
                              absl::Span<const std::string_view> argv, Slice raw, Request* r);
  void Blocking(ClientSession* session, const protocol::CommandInfo& cmd,
                absl::Span<const std::string_view> argv, Slice raw, Request* r);
  // The request's own bytes, RESP-encoded when it came inline.
  Slice Encoded(absl::Span<const std::string_view> argv, Slice raw);
  void ReplyHello(ClientSession* session, absl::Span<const std::string_view> argv, Request* r);
  void ReplyAuth(ClientSession* session, absl::Span<const std::string_view> argv, Request* r);
  void ReplyClientSetName(ClientSession* session, std::string_view name, Request* r);
  void ReplyLocal(Request* r, std::string_view bytes, bool is_error);
  // EVAL / EVAL_RO / SCRIPT LOAD bodies go to the shared ScriptCache; SCRIPT FLUSH empties it.
  bool NoteScript(const protocol::CommandInfo& cmd, absl::Span<const std::string_view> argv,
                  std::vector<std::string_view>* as_eval);
  bool QueueScriptAsEval(ClientSession* session, const protocol::CommandInfo& cmd,
                         const CommandPolicy& policy, absl::Span<const std::string_view> argv,
                         Request* r);

  Worker* worker_;
  // Hashes of bodies already in the ScriptCache (valid while its generation is unchanged), so a
  // script run over and over costs one hash lookup here, not a SHA1 and a lock each time.
  absl::flat_hash_set<uint64_t> remembered_scripts_;
  uint64_t remembered_generation_ = 0;
  std::string script_body_;  // the body an EVALSHA is being sent with
  std::string scratch_;  // reused encoding buffer
  protocol::KeyPositions keys_;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_DISPATCHER_H_
