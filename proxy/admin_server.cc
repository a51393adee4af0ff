#include "proxy/admin_server.h"

#include <httplib.h>

#include <chrono>

#include <nlohmann/json.hpp>

#include "absl/time/time.h"
#include "protocol/strings.h"
#include "proxy/console_files.h"
#include "proxy/logging.h"

namespace slotpilot::proxy {
namespace {

using nlohmann::json;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

void ReplyJson(httplib::Response& res, const std::string& body, int status = 200) {
  res.status = status;
  res.set_content(body, "application/json");
}

void ReplyError(httplib::Response& res, int status, const std::string& message) {
  ReplyJson(res, json{{"error", message}}.dump() + "\n", status);
}

// On every answer of the admin port, the console's and the API's alike: a page from here runs
// only its own script and style, talks only to this origin, loads nothing else and cannot be
// framed; no answer is sniffed as another type, cached, or leaks its URL as a referrer.
httplib::Headers SecurityHeaders() {
  return {{"Content-Security-Policy",
           "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
           "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
          {"X-Content-Type-Options", "nosniff"},
          {"X-Frame-Options", "DENY"},
          {"Referrer-Policy", "no-referrer"},
          {"Cache-Control", "no-store"}};
}

// A handler answering with one embedded console file (proxy/console/).
httplib::Server::Handler ServeConsoleFile(std::string_view name) {
  for (const ConsoleFile& file : ConsoleFiles()) {
    if (file.name != name) continue;
    return [file](const httplib::Request&, httplib::Response& res) {
      res.set_content(file.body.data(), file.body.size(), std::string(file.content_type).c_str());
    };
  }
  const std::string missing = StrCat("console file ", name, " is not in this build");
  return [missing](const httplib::Request&, httplib::Response& res) { ReplyError(res, 500, missing); };
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// `curl -X POST URL` sends neither Content-Length nor Transfer-Encoding: a request without a body
// (RFC 9112 section 6.3). httplib 0.11 instead reads such a body until the connection closes and
// answers 400 after its read timeout, before any route runs. Saying "Content-Length: 0" makes it
// read nothing. The request is httplib's own non-const object, handed to this hook as const.
void MarkEmptyBody(const httplib::Request& req) {
  if (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) return;
  const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
}

}  // namespace

std::string LoopsJson(const std::vector<LoopRecord>& loops, std::optional<uint16_t> slot_filter) {
  json list = json::array();
  for (const LoopRecord& r : loops) {
    if (slot_filter && r.slot != *slot_filter) continue;
    json nodes = json::array();
    json node_ids = json::array();
    for (const LoopNode& n : r.nodes) {
      nodes.push_back(n.address);
      node_ids.push_back(n.id);
    }
    list.push_back({{"slot", r.slot},
                    {"pattern", std::string(LoopPatternName(r.pattern))},
                    {"count", r.count},
                    {"nodes", nodes},
                    {"node_ids", node_ids},
                    {"first_seen", Rfc3339(r.first_seen)},
                    {"last_seen", Rfc3339(r.last_seen)},
                    {"last_chain", r.last_chain}});
  }
  return json{{"loops", list}}.dump() + "\n";
}

std::string SlotsJson(const TopologySnapshot& t, const std::string& open_slots_json) {
  json ranges = json::array();
  if (t != nullptr) {
    int start = 0;
    for (int s = 1; s <= protocol::kSlotCount; ++s) {
      if (s < protocol::kSlotCount && t->slot_master[s] == t->slot_master[start]) continue;
      int16_t m = t->slot_master[start];
      json range = {{"start", start}, {"end", s - 1}};
      if (m >= 0) {
        range["node_id"] = t->masters[m].id;
        range["address"] = t->masters[m].Address();
      } else {
        range["node_id"] = nullptr;
        range["address"] = nullptr;
      }
      ranges.push_back(range);
      start = s;
    }
  }
  json out = {{"loaded", t != nullptr}, {"ranges", ranges},
              {"open_slots", json::parse(open_slots_json, nullptr, false)}};
  if (t != nullptr) {
    out["version"] = t->version;
    out["fetched_from"] = t->fetched_from;
    out["fetched_at"] = Rfc3339(t->fetched_at);
    out["slots_assigned"] = t->assigned_slots;
  }
  return out.dump() + "\n";
}

absl::Status ProbeHealthz(const std::string& host, uint16_t port) {
  // A wildcard listen address is reached through loopback.
  const std::string target = host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host;
  httplib::Client client(target, port);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(2, 0);
  httplib::Result result = client.Get("/healthz");
  const std::string where = StrCat("http://", FormatAddress(target, port), "/healthz");
  if (!result) {
    return absl::UnavailableError(
        StrCat(where, ": no answer (", httplib::to_string(result.error()), " error)"));
  }
  if (result->status != 200) {
    return absl::UnavailableError(StrCat(where, ": HTTP ", result->status));
  }
  return absl::OkStatus();
}

AdminServer::AdminServer(AdminServerOptions options, AdminSource* source)
    : options_(std::move(options)), source_(source), server_(std::make_unique<httplib::Server>()) {}

AdminServer::~AdminServer() { Stop(); }

absl::Status AdminServer::Start() {
  size_t threads = options_.threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options_.max_body_bytes);
  // httplib bounds each header line but not their count: refuse floods before any handler runs.
  server_->set_pre_routing_handler([max = options_.max_headers](const httplib::Request& req,
                                                                 httplib::Response& res) {
    if (req.headers.size() > max) {
      res.status = 431;
      res.set_content(json{{"error", StrCat("more than ", max, " header lines")}}.dump() + "\n",
                      "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    MarkEmptyBody(req);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server_->set_read_timeout(5, 0);
  server_->set_write_timeout(5, 0);
  server_->set_keep_alive_max_count(100);
  // Short: an idle keep-alive connection (a console between refreshes) holds a pool thread.
  server_->set_keep_alive_timeout(2);
  server_->set_default_headers(SecurityHeaders());
  ConsoleRoutes();
  Routes();
  if (!server_->bind_to_port(options_.host, options_.port)) {
    return absl::UnavailableError(StrCat("cannot listen on admin address ",
                                         FormatAddress(options_.host, options_.port)));
  }
  port_ = options_.port;
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  return absl::OkStatus();
}

void AdminServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing before listen_after_bind() marks the server running: wait
  // (bounded) for that, or the thread would stay in accept() and join() would never return.
  for (int i = 0; i < 5000 && !server_->is_running() && !listen_returned_; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  server_->stop();
  thread_.join();
}

bool AdminServer::Authorized(const std::string& header, int* status, std::string* why) const {
  if (options_.token.empty()) {
    *status = 403;
    *why = "admin actions are disabled: start slotpilot with --admin-token-file";
    return false;
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (header.size() <= kBearer.size() || header.compare(0, kBearer.size(), kBearer) != 0 ||
      !ConstantTimeEquals(header.substr(kBearer.size()), options_.token)) {
    *status = 401;
    *why = "missing or wrong bearer token";
    return false;
  }
  return true;
}

// The operator console: one page and its style and scripts, all read-only; the page reads the
// JSON API below and POSTs to it with a token the operator types in.
void AdminServer::ConsoleRoutes() {
  httplib::Server& s = *server_;
  s.Get("/", ServeConsoleFile("index.html"));
  s.Get("/console.css", ServeConsoleFile("console.css"));
  s.Get("/console.js", ServeConsoleFile("console.js"));
  s.Get("/draw.js", ServeConsoleFile("draw.js"));
}

void AdminServer::Routes() {
  httplib::Server& s = *server_;
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::string reason;
    if (source_->Topology() == nullptr) {
      reason = StrCat("topology not loaded: ", source_->TopologyError());
    }
    for (const MasterHealth& m : source_->Masters()) {
      if (reason.empty() && !m.reachable) reason = StrCat("master ", m.address, " unreachable: ", m.error);
    }
    res.status = reason.empty() ? 200 : 503;
    res.set_content(reason.empty() ? "ready\n" : reason + "\n", "text/plain");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(RenderPrometheus(source_->Totals(), source_->Control(), source_->Loops()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/v1/loops", [this](const httplib::Request& req, httplib::Response& res) {
    std::optional<uint16_t> slot;
    if (req.has_param("slot")) {
      int value = -1;
      if (!ParseInt(req.get_param_value("slot"), &value) || value < 0 || value >= protocol::kSlotCount) {
        return ReplyError(res, 400, "slot must be an integer in 0..16383");
      }
      slot = static_cast<uint16_t>(value);
    }
    ReplyJson(res, LoopsJson(source_->Loops(), slot));
  });
  s.Get("/v1/slots", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, SlotsJson(source_->Topology(), source_->OpenSlotsJson()));
  });
  s.Get("/v1/migrations", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, source_->MigrationsJson());
  });
  s.Get("/v1/cluster", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, source_->ClusterJson());
  });
  s.Post(R"(/v1/migrations/(\d+)/(finish|rollback))", [this](const httplib::Request& req, httplib::Response& res) {
    int status = 0;
    std::string why;
    if (!Authorized(req.get_header_value("Authorization"), &status, &why)) return ReplyError(res, status, why);
    int slot = -1;
    if (!ParseInt(std::string(req.matches[1]), &slot) || slot >= protocol::kSlotCount) {
      return ReplyError(res, 400, "slot must be an integer in 0..16383");
    }
    absl::Status done = source_->RequestMigrationAction(static_cast<uint16_t>(slot), req.matches[2]);
    if (absl::IsUnimplemented(done)) return ReplyError(res, 501, std::string(done.message()));
    if (!done.ok()) return ReplyError(res, absl::IsNotFound(done) ? 404 : 409, std::string(done.message()));
    ReplyJson(res, json{{"slot", slot}, {"action", std::string(req.matches[2])}, {"accepted", true}}.dump() + "\n", 202);
  });
  s.Get("/v1/config", [this](const httplib::Request&, httplib::Response& res) {
    json out = json::object();
    for (const auto& [key, value] : source_->EffectiveConfig()) out[key] = value;
    ReplyJson(res, out.dump(2) + "\n");
  });
  s.Get("/v1/log-level", [this](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, json{{"level", source_->LogLevel()}}.dump() + "\n");
  });
  s.Put("/v1/log-level", [this](const httplib::Request& req, httplib::Response& res) {
    int status = 0;
    std::string why;
    if (!Authorized(req.get_header_value("Authorization"), &status, &why)) return ReplyError(res, status, why);
    std::string level = req.has_param("level") ? req.get_param_value("level") : req.body;
    while (!level.empty() && (level.back() == '\n' || level.back() == '\r' || level.back() == ' ')) level.pop_back();
    absl::Status set = source_->SetLogLevel(level);
    if (!set.ok()) return ReplyError(res, 400, std::string(set.message()));
    ReplyJson(res, json{{"level", level}}.dump() + "\n");
  });
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      res.set_content(json{{"error", StrCat("HTTP ", res.status)}}.dump() + "\n", "application/json");
    }
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    ReplyError(res, 500, "internal error");
  });
}

}  // namespace slotpilot::proxy
