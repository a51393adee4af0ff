#include "proxy/dispatcher.h"

#include "absl/hash/hash.h"
#include "protocol/strings.h"
#include "protocol/resp.h"
#include "protocol/slot.h"
#include "proxy/client_session.h"
#include "proxy/local_commands.h"
#include "proxy/pubsub_relay.h"
#include "proxy/transaction.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

using protocol::CommandInfo;

constexpr std::string_view kCrossSlot = "CROSSSLOT Keys in request don't hash to the same slot";
constexpr std::string_view kNoAuth = "NOAUTH Authentication required.";
constexpr std::string_view kWrongPass = "WRONGPASS invalid username-password pair or user is disabled.";

// Password comparison whose duration does not depend on where the first difference is.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

void Dispatcher::Dispatch(ClientSession* session, absl::Span<const std::string_view> argv, Slice raw) {
  Request* r = worker_->NewRequest(session);
  session->Enqueue(r);
  absl::StatusOr<const CommandInfo*> cmd = protocol::ResolveCommand(argv);
  if (!cmd.ok()) {
    worker_->stats().requests[static_cast<size_t>(CommandClass::kOther)].Add();
    if (session->in_transaction()) session->transaction().MarkDirty();  // EXEC will abort
    worker_->CompleteWithError(r, AsStd(cmd.status().message()));
    return;
  }
  const WorkerOptions& o = worker_->options();
  const CommandPolicy& policy = PolicyFor(*cmd, o.allow_admin_commands);
  r->command_class = static_cast<uint16_t>(policy.command_class);
  session->row().last_command.store(*cmd, std::memory_order_relaxed);  // CLIENT LIST's cmd, idle
  session->row().last_command_ms.store(worker_->now_ms(), std::memory_order_relaxed);
  worker_->stats().requests[r->command_class].Add();
  if (!o.client_password.empty() && !session->authenticated && !policy.allowed_before_auth) {
    if (session->in_transaction()) session->transaction().MarkDirty();
    worker_->CompleteWithError(r, kNoAuth);
    return;
  }
  if (session->subscribed() && !policy.allowed_when_subscribed) {
    worker_->CompleteWithError(
        r, StrCat("ERR Can't execute '", (*cmd)->full_name,
                  "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"));
    return;
  }
  std::vector<std::string_view> as_eval;  // EVALSHA of a known body: sent as EVAL (ScriptCache)
  if (session->in_transaction()) {
    // a transaction's EVALs are remembered when its EXEC ran them (Transaction)
  } else if (NoteScript(**cmd, argv, &as_eval)) {
    argv = as_eval;
    raw = Slice();
    r->sent_as_eval = true;
  }
  if (session->in_transaction() && !policy.runs_in_multi) {
    if (QueueScriptAsEval(session, **cmd, policy, argv, r)) return;
    session->transaction().Queue(**cmd, policy, argv, std::move(raw), r);
    return;
  }
  switch (policy.route) {
    case CommandRoute::kLocal:
      RunLocal(session, policy.local, **cmd, argv, std::move(raw), r);
      return;
    case CommandRoute::kBlocking:
      return Blocking(session, **cmd, argv, std::move(raw), r);
    case CommandRoute::kForbidden:
    case CommandRoute::kUnsupported:
      worker_->CompleteWithError(r, policy.error);
      return;
    case CommandRoute::kByKey:
      if (!ComputeSlot(**cmd, argv, r)) return;
      if (policy.command_class == CommandClass::kWrite && r->keyed) {
        uint16_t node = worker_->routing().NodeForSlot(r->slot);
        if (node != RoutingTable::kNoNode) session->last_write_node = node;
      }
      break;
    case CommandRoute::kAnyMaster:
      // PUBLISH goes where this worker's SUBSCRIBE connections go (PubSubRelay), so its reply
      // counts the receivers subscribed through this proxy, as a single Redis would.
      if ((*cmd)->full_name == "publish" && !worker_->routing().masters().empty()) {
        r->target_node = worker_->routing().masters().front();
      }
      break;
    case CommandRoute::kSplitByKey:
      return SplitByKey(policy, **cmd, argv, std::move(raw), r);
    case CommandRoute::kAllMasters:
      return SendToAllMasters(policy, argv, std::move(raw), r);
    case CommandRoute::kScan:
      return Scan(argv, r);
  }
  Forward(r, argv, std::move(raw));
}

// Sets r->slot from the command's keys. Answers r (and returns false) on CROSSSLOT.
bool Dispatcher::ComputeSlot(const CommandInfo& cmd, absl::Span<const std::string_view> argv,
                             Request* r) {
  keys_.clear();
  absl::Status st = protocol::GetKeyPositions(cmd, argv, &keys_, /*include_not_keys=*/true);
  if (!st.ok()) {
    worker_->CompleteWithError(r, AsStd(st.message()));
    return false;
  }
  if (keys_.empty()) return true;  // optional keys absent: any master
  uint16_t slot = protocol::KeyHashSlot(argv[keys_[0]]);
  for (size_t i = 1; i < keys_.size(); ++i) {
    if (protocol::KeyHashSlot(argv[keys_[i]]) != slot) {
      worker_->CompleteWithError(r, kCrossSlot);
      return false;
    }
  }
  r->keyed = true;
  r->slot = slot;
  return true;
}

Slice Dispatcher::Encoded(absl::Span<const std::string_view> argv, Slice raw) {
  if (!raw.empty()) return raw;
  scratch_.clear();  // inline command: upstreams get proper RESP
  protocol::AppendCommand(&scratch_, argv);
  return worker_->arena().Copy(scratch_);
}

void Dispatcher::Forward(Request* r, absl::Span<const std::string_view> argv, Slice raw) {
  r->bytes = Encoded(argv, std::move(raw));
  worker_->TrackDeadline(r);
  if (worker_->follower().DeferBehindRetries(r)) return;  // must not overtake a retry
  worker_->follower().router().Route(r);
}

// EVAL / EVAL_RO bodies go to the shared ScriptCache and SCRIPT FLUSH empties it. Returns true
// (with *as_eval filled) for an EVALSHA / EVALSHA_RO of a body the cache knows.
bool Dispatcher::NoteScript(const CommandInfo& cmd, absl::Span<const std::string_view> argv,
                            std::vector<std::string_view>* as_eval) {
  std::string_view name = cmd.full_name;
  ScriptCache* scripts = worker_->shared().scripts;
  if (scripts == nullptr || (name[0] != 'e' && name[0] != 's')) return false;  // most commands
  if (name == "script|flush") {
    scripts->Clear();
    return false;
  }
  bool read_only = name == "evalsha_ro";
  if ((read_only || name == "evalsha") && argv.size() > 2) {
    std::optional<std::string> body = scripts->Find(argv[1]);
    if (!body.has_value()) return false;
    script_body_ = std::move(*body);  // argv views it until the request is encoded
    as_eval->assign(argv.begin(), argv.end());
    (*as_eval)[0] = read_only ? "EVAL_RO" : "EVAL";
    (*as_eval)[1] = script_body_;
    worker_->stats().evalsha_as_eval.Add();
    return true;
  }
  if ((name != "eval" && name != "eval_ro") || argv.size() < 2) return false;
  if (scripts->generation() != remembered_generation_) {
    remembered_scripts_.clear();
    remembered_generation_ = scripts->generation();
  }
  if (remembered_scripts_.size() > 4096) remembered_scripts_.clear();  // bounded memo
  if (remembered_scripts_.insert(absl::HashOf(argv[1])).second) scripts->Remember(argv[1]);
  return false;
}

// Inside MULTI a NOSCRIPT cannot be resent (it is one element of EXEC's answer), so an EVALSHA
// of a script the proxy knows is queued as EVAL: the same effect on any master.
bool Dispatcher::QueueScriptAsEval(ClientSession* session, const CommandInfo& cmd,
                                   const CommandPolicy& policy,
                                   absl::Span<const std::string_view> argv, Request* r) {
  bool read_only = cmd.full_name == "evalsha_ro";
  ScriptCache* scripts = worker_->shared().scripts;
  if ((!read_only && cmd.full_name != "evalsha") || argv.size() < 3 || scripts == nullptr) {
    return false;
  }
  std::optional<std::string> body = scripts->Find(argv[1]);
  if (!body.has_value()) return false;
  std::vector<std::string_view> as_eval(argv.begin(), argv.end());
  as_eval[0] = read_only ? "EVAL_RO" : "EVAL";
  as_eval[1] = *body;
  session->transaction().Queue(cmd, policy, as_eval, Slice(), r);
  return true;
}

void Dispatcher::ReplyLocal(Request* r, std::string_view bytes, bool is_error) {
  worker_->Complete(r, worker_->arena().Copy(bytes), is_error);
}

void Dispatcher::RunLocal(ClientSession* session, LocalCommand command, const CommandInfo& cmd,
                          absl::Span<const std::string_view> argv, Slice raw, Request* r) {
  if (RunTransactionOrPubSub(session, command, cmd, argv, std::move(raw), r)) return;
  scratch_.clear();
  switch (command) {
    case LocalCommand::kPing:
      if (argv.size() > 2) {  // arity -1 in the table; Redis checks the upper bound in pingCommand
        return worker_->CompleteWithError(r, "ERR wrong number of arguments for 'ping' command");
      }
      if (argv.size() > 1) {
        protocol::AppendBulk(&scratch_, argv[1]);
      } else {
        protocol::AppendStatus(&scratch_, "PONG");
      }
      return ReplyLocal(r, scratch_, false);
    case LocalCommand::kEcho:
      protocol::AppendBulk(&scratch_, argv[1]);
      return ReplyLocal(r, scratch_, false);
    case LocalCommand::kQuit:
      ReplyLocal(r, "+OK\r\n", false);
      session->CloseAfterReplies();
      return;
    case LocalCommand::kSelect: {
      int64_t db = 0;
      if (!ParseInt(argv[1], &db)) {
        return worker_->CompleteWithError(r, "ERR value is not an integer or out of range");
      }
      if (db != 0) return worker_->CompleteWithError(r, "ERR SELECT is not allowed in cluster mode");
      return ReplyLocal(r, "+OK\r\n", false);
    }
    case LocalCommand::kHello:
      return ReplyHello(session, argv, r);
    case LocalCommand::kAuth:
      return ReplyAuth(session, argv, r);
    case LocalCommand::kClientSetName:
      return ReplyClientSetName(session, argv[2], r);
    case LocalCommand::kClientGetName:
      if (session->name.empty()) {
        protocol::AppendNil(&scratch_);
      } else {
        protocol::AppendBulk(&scratch_, session->name);
      }
      return ReplyLocal(r, scratch_, false);
    case LocalCommand::kClientId:
      protocol::AppendInteger(&scratch_, static_cast<int64_t>(session->id()));
      return ReplyLocal(r, scratch_, false);
    case LocalCommand::kInfo:
      return AnswerInfo(worker_, argv, r);
    case LocalCommand::kClientList:
      return AnswerClientList(worker_, argv, r);
    case LocalCommand::kClientInfo:
      return AnswerClientInfo(worker_, session, r);
    case LocalCommand::kClusterKeySlot:
      protocol::AppendInteger(&scratch_, protocol::KeyHashSlot(argv[2]));
      return ReplyLocal(r, scratch_, false);
    case LocalCommand::kReset:
      session->ResetState();
      return ReplyLocal(r, "+RESET\r\n", false);
    case LocalCommand::kReadOnlyNoop:
      return ReplyLocal(r, "+OK\r\n", false);
    default:
      break;
  }
  worker_->CompleteWithError(r, "ERR slotpilot: internal error: unhandled local command");
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]. RESP3 is refused with NOPROTO
// so clients fall back to RESP2, the protocol the proxy frames.
void Dispatcher::ReplyHello(ClientSession* session, absl::Span<const std::string_view> argv,
                            Request* r) {
  size_t i = 1;
  if (argv.size() > 1) {
    int64_t version = 0;
    if (!ParseInt(argv[1], &version)) {
      return worker_->CompleteWithError(r, "ERR Protocol version is not an integer or out of range");
    }
    if (version != 2) return worker_->CompleteWithError(r, "NOPROTO unsupported protocol version");
    i = 2;
  }
  std::string_view setname;
  bool has_setname = false;
  for (; i < argv.size(); ++i) {
    size_t left = argv.size() - i - 1;
    if (EqualsIgnoreCase(argv[i], "AUTH") && left >= 2) {
      const std::string& want = worker_->options().client_password;
      bool ok = !want.empty() && (argv[i + 1] == "default") && ConstantTimeEquals(argv[i + 2], want);
      if (!ok) return worker_->CompleteWithError(r, kWrongPass);
      session->authenticated = true;
      i += 2;
    } else if (EqualsIgnoreCase(argv[i], "SETNAME") && left >= 1) {
      setname = argv[++i];
      has_setname = true;
    } else {
      return worker_->CompleteWithError(
          r, StrCat("ERR Syntax error in HELLO option '", argv[i], "'"));
    }
  }
  if (!worker_->options().client_password.empty() && !session->authenticated) {
    return worker_->CompleteWithError(r, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
  }
  if (has_setname) session->SetName(setname);
  scratch_.clear();
  protocol::AppendArrayHeader(&scratch_, 14);
  protocol::AppendBulk(&scratch_, "server");
  protocol::AppendBulk(&scratch_, "redis");
  protocol::AppendBulk(&scratch_, "version");
  protocol::AppendBulk(&scratch_, worker_->redis_version());
  protocol::AppendBulk(&scratch_, "proto");
  protocol::AppendInteger(&scratch_, 2);
  protocol::AppendBulk(&scratch_, "id");
  protocol::AppendInteger(&scratch_, static_cast<int64_t>(session->id()));
  protocol::AppendBulk(&scratch_, "mode");
  protocol::AppendBulk(&scratch_, "standalone");
  protocol::AppendBulk(&scratch_, "role");
  protocol::AppendBulk(&scratch_, "master");
  protocol::AppendBulk(&scratch_, "modules");
  protocol::AppendArrayHeader(&scratch_, 0);
  ReplyLocal(r, scratch_, false);
}

// AUTH [username] password, checked against --client-password-file (user "default" only).
void Dispatcher::ReplyAuth(ClientSession* session, absl::Span<const std::string_view> argv,
                           Request* r) {
  const std::string& want = worker_->options().client_password;
  if (argv.size() > 3) return worker_->CompleteWithError(r, "ERR syntax error");
  if (want.empty()) {
    return worker_->CompleteWithError(
        r, argv.size() == 2
               ? "ERR AUTH <password> called without any password configured for the default user. "
                 "Are you sure your configuration is correct?"
               : std::string(kWrongPass));
  }
  bool user_ok = argv.size() == 2 || argv[1] == "default";
  if (!user_ok || !ConstantTimeEquals(argv.back(), want)) {
    session->authenticated = false;
    return worker_->CompleteWithError(r, kWrongPass);
  }
  session->authenticated = true;
  ReplyLocal(r, "+OK\r\n", false);
}

void Dispatcher::ReplyClientSetName(ClientSession* session, std::string_view name, Request* r) {
  for (char c : name) {
    if (c < '!' || c > '~') {
      return worker_->CompleteWithError(
          r, "ERR Client names cannot contain spaces, newlines or special characters.");
    }
  }
  session->SetName(name);
  ReplyLocal(r, "+OK\r\n", false);
}

}  // namespace slotpilot::proxy
