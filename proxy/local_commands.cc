#include "proxy/local_commands.h"

#include <unistd.h>

#include <chrono>
#include <vector>

#include "protocol/resp.h"
#include "protocol/strings.h"
#include "proxy/client_session.h"
#include "proxy/fanout.h"
#include "proxy/version.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

// Process start, for uptime_in_seconds.
const std::chrono::steady_clock::time_point kStart = std::chrono::steady_clock::now();

uint64_t SecondsSince(uint64_t then_ms, uint64_t now_ms) {
  return now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
}

std::string FlagsOf(const ClientRow& row) {
  std::string flags;
  if (row.HasFlag(ClientRow::kPubSub)) flags += 'P';
  if (row.HasFlag(ClientRow::kMulti)) flags += 'x';
  if (row.HasFlag(ClientRow::kBlocked)) flags += 'b';
  return flags.empty() ? "N" : flags;
}

void ReplyBulk(Worker* worker, Request* r, std::string_view text) {
  std::string out;
  protocol::AppendBulk(&out, text);
  worker->Complete(r, worker->arena().Copy(out), false);
}

// What CLIENT LIST's arguments select. Redis's own error texts for bad ones.
struct ClientFilter {
  bool pubsub_only = false, normal_only = false, none = false;
  std::vector<uint64_t> ids;  // empty: any
  bool Matches(const ClientRow& row) const {
    if (none) return false;
    bool pubsub = row.HasFlag(ClientRow::kPubSub);
    if ((pubsub_only && !pubsub) || (normal_only && pubsub)) return false;
    if (ids.empty()) return true;
    for (uint64_t id : ids) {
      if (id == row.id) return true;
    }
    return false;
  }
};

std::string ParseClientFilter(absl::Span<const std::string_view> argv, ClientFilter* f) {
  if (argv.size() == 2) return "";
  if (argv.size() == 4 && EqualsIgnoreCase(argv[2], "TYPE")) {
    std::string type = ToLower(argv[3]);
    if (type == "normal") {
      f->normal_only = true;
    } else if (type == "pubsub") {
      f->pubsub_only = true;
    } else if (type == "master" || type == "replica" || type == "slave") {
      f->none = true;  // replication links never pass through the proxy
    } else {
      return StrCat("ERR Unknown client type '", argv[3], "'");
    }
    return "";
  }
  if (argv.size() > 3 && EqualsIgnoreCase(argv[2], "ID")) {
    for (size_t i = 3; i < argv.size(); ++i) {
      int64_t id = 0;
      if (!ParseInt(argv[i], &id) || id <= 0) return "ERR Invalid client ID";
      f->ids.push_back(static_cast<uint64_t>(id));
    }
    return "";
  }
  return "ERR syntax error";
}

std::string ServerSection(Worker* worker) {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now() - kStart).count();
  return StrCat("# Server\r\nredis_version:", worker->redis_version(),
                "\r\nredis_mode:standalone\r\nslotpilot_version:", Version(),
                "\r\narch_bits:", sizeof(void*) * 8, "\r\nprocess_id:", static_cast<int64_t>(getpid()),
                "\r\ntcp_port:", worker->options().listen_port, "\r\nuptime_in_seconds:", uptime,
                "\r\nuptime_in_days:", uptime / 86400, "\r\n");
}

std::string ClientsSection(Worker* worker) {
  return StrCat("# Clients\r\nconnected_clients:", worker->shared().clients.load(),
                "\r\nmaxclients:", worker->options().max_clients,
                "\r\nblocked_clients:", worker->shared().client_registry.CountBlocked(),
                "\r\ntracking_clients:0\r\n");
}

std::string ProxySection(Worker* worker) {
  const WorkerStats& s = worker->stats();
  return StrCat("# Proxy\r\nproxy_worker:", worker->id(),
                "\r\nproxy_topology_version:", worker->routing().version(),
                "\r\nproxy_masters:", worker->routing().masters().size(),
                "\r\nproxy_redirects_moved:", s.redirects_moved.value(),
                "\r\nproxy_redirects_ask:", s.redirects_ask.value(),
                "\r\nproxy_request_timeouts:", s.request_timeouts.value(), "\r\n");
}

// INFO's merged reply once every master answered INFO KEYSPACE; the proxy's own sections wait
// in the fan-out's text. INFO never fails (monitoring depends on it): masters that did not
// answer are left out of the sums and counted in slotpilot_keyspace_unanswered.
std::string MergeInfo(const FanOut& fanout, std::string*) {
  std::vector<std::string> texts;
  size_t unanswered = 0;
  for (const Request* c : fanout.children()) {
    auto v = protocol::DecodeReply(c->reply.view());
    if (v.ok() && v->type == protocol::ReplyType::kBulk) {
      texts.push_back(std::move(v->str));
    } else {
      ++unanswered;
    }
  }
  std::vector<std::string_view> views(texts.begin(), texts.end());
  std::string text = fanout.text;
  if (!text.empty()) text += "\r\n";
  StrAppend(&text, "# Keyspace\r\n", MergeKeyspaceLines(views));
  if (unanswered > 0) StrAppend(&text, "slotpilot_keyspace_unanswered:", unanswered, "\r\n");
  std::string out;
  protocol::AppendBulk(&out, text);
  return out;
}

uint64_t FieldValue(std::string_view line, std::string_view field) {
  size_t at = line.find(field);
  if (at == std::string_view::npos) return 0;
  std::string_view rest = line.substr(at + field.size());
  rest = rest.substr(0, rest.find_first_of(",\r\n"));
  uint64_t v = 0;
  return ParseInt(rest, &v) ? v : 0;
}

}  // namespace

std::string FormatClientLine(const ClientRow& row, const std::string& name, uint64_t now_ms) {
  const protocol::CommandInfo* cmd = row.last_command.load(std::memory_order_relaxed);
  uint64_t last = row.last_command_ms.load(std::memory_order_relaxed);
  return StrCat("id=", row.id, " addr=", row.addr, " laddr=", row.laddr, " fd=", row.fd,
                " name=", name, " age=", SecondsSince(row.created_ms, now_ms),
                " idle=", SecondsSince(last != 0 ? last : row.created_ms, now_ms),
                " flags=", FlagsOf(row), " db=0 sub=0 psub=0 ssub=0 multi=",
                row.multi_queued.load(std::memory_order_relaxed),
                " qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0"
                " events=r cmd=", cmd != nullptr ? cmd->full_name : std::string_view("NULL"),
                " user=default redir=-1 resp=2\n");
}

std::string MergeKeyspaceLines(absl::Span<const std::string_view> infos) {
  uint64_t keys = 0, expires = 0, ttl_weighted = 0;
  for (std::string_view info : infos) {
    size_t at = info.find("db0:");
    if (at == std::string_view::npos) continue;
    std::string_view line = info.substr(at, info.find('\n', at) - at);
    uint64_t e = FieldValue(line, "expires=");
    keys += FieldValue(line, "keys=");
    expires += e;
    ttl_weighted += FieldValue(line, "avg_ttl=") * e;  // avg_ttl averages over keys with a TTL
  }
  if (keys == 0) return "";
  return StrCat("db0:keys=", keys, ",expires=", expires,
                ",avg_ttl=", expires == 0 ? 0 : ttl_weighted / expires, "\r\n");
}

void AnswerClientList(Worker* worker, absl::Span<const std::string_view> argv, Request* r) {
  ClientFilter filter;
  std::string error = ParseClientFilter(argv, &filter);
  if (!error.empty()) return worker->CompleteWithError(r, error);
  std::string text;
  uint64_t now = worker->now_ms();
  worker->shared().client_registry.ForEach([&](const ClientRow& row, const std::string& name) {
    if (filter.Matches(row)) text += FormatClientLine(row, name, now);
  });
  ReplyBulk(worker, r, text);
}

void AnswerClientInfo(Worker* worker, ClientSession* session, Request* r) {
  std::string text;
  uint64_t now = worker->now_ms();
  const ClientRow* own = &session->row();
  worker->shared().client_registry.ForEach([&](const ClientRow& row, const std::string& name) {
    if (&row == own) text = FormatClientLine(row, name, now);
  });
  ReplyBulk(worker, r, text);
}

void AnswerInfo(Worker* worker, absl::Span<const std::string_view> argv, Request* r) {
  bool server = false, clients = false, proxy = false, keyspace = false;
  if (argv.size() == 1) server = clients = proxy = keyspace = true;
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string s = ToLower(argv[i]);
    bool all = s == "all" || s == "default" || s == "everything";
    server |= all || s == "server";
    clients |= all || s == "clients";
    proxy |= all || s == "proxy";
    keyspace |= all || s == "keyspace";
  }
  std::vector<std::string> sections;
  if (server) sections.push_back(ServerSection(worker));
  if (clients) sections.push_back(ClientsSection(worker));
  if (proxy) sections.push_back(ProxySection(worker));
  std::string text;
  for (const std::string& s : sections) StrAppend(&text, text.empty() ? "" : "\r\n", s);
  const std::vector<uint16_t>& masters = worker->routing().masters();
  if (!keyspace) return ReplyBulk(worker, r, text);
  if (masters.empty()) {
    return worker->CompleteWithError(r, "CLUSTERDOWN slotpilot: cluster topology not loaded yet");
  }
  auto* fanout = new FanOut(r, MergeKind::kCustom);
  r->group.reset(fanout);
  fanout->SetCustomMerge(MergeInfo);
  fanout->text = std::move(text);
  std::string bytes;
  protocol::AppendCommand(&bytes, {std::string_view("INFO"), std::string_view("keyspace")});
  Slice shared = worker->arena().Copy(bytes);
  std::vector<Request*> children;
  for (uint16_t node : masters) {
    Request* child = worker->NewRequest(nullptr);
    child->deadline_ms = r->deadline_ms;
    child->command_class = r->command_class;
    child->bytes = shared;
    child->target_node = node;
    fanout->AddChild(worker, child);
    children.push_back(child);
  }
  worker->TrackDeadline(r);
  for (Request* child : children) worker->follower().router().Route(child);
}

}  // namespace slotpilot::proxy
