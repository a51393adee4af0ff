#include "migration/redis_client.h"

#include <sys/time.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "hiredis.h"

namespace slotpilot::migration {
namespace {

using protocol::ReplyType;
using protocol::RespValue;

struct timeval ToTimeval(std::chrono::milliseconds ms) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

RespValue Convert(const redisReply* r) {
  RespValue v;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      v.type = ReplyType::kStatus;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = ReplyType::kError;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STRING:
      v.type = ReplyType::kBulk;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = ReplyType::kInteger;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = ReplyType::kArray;
      v.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) v.elements.push_back(Convert(r->element[i]));
      break;
    default:
      v.type = ReplyType::kNil;
  }
  return v;
}

}  // namespace

struct RedisClient::Context {
  redisContext* c = nullptr;
  ~Context() {
    if (c != nullptr) redisFree(c);
  }
};

RedisClient::RedisClient(std::string host, int port, std::unique_ptr<Context> ctx)
    : host_(std::move(host)), port_(port), ctx_(std::move(ctx)) {}

RedisClient::~RedisClient() = default;

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(std::string host, int port,
                                                                  RedisClientOptions options) {
  auto ctx = std::make_unique<Context>();
  ctx->c = redisConnectWithTimeout(host.c_str(), port, ToTimeval(options.connect_timeout));
  if (ctx->c == nullptr) return absl::ResourceExhaustedError("cannot allocate redis context");
  if (ctx->c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect to ", host, ":", port, " failed: ", ctx->c->errstr));
  }
  redisSetTimeout(ctx->c, ToTimeval(options.command_timeout));
  std::unique_ptr<RedisClient> client(new RedisClient(std::move(host), port, std::move(ctx)));
  if (!options.password.empty()) {
    absl::StatusOr<RespValue> auth =
        options.username.empty()
            ? client->Command({"AUTH", options.password})
            : client->Command({"AUTH", options.username, options.password});
    if (!auth.ok()) return auth.status();
    if (auth->is_error()) {
      return absl::PermissionDeniedError(absl::StrCat("AUTH to ", client->address(),
                                                      " failed: ", auth->str));
    }
  }
  return client;
}

absl::StatusOr<RespValue> RedisClient::ReadReply() {
  void* raw = nullptr;
  if (redisGetReply(ctx_->c, &raw) != REDIS_OK || raw == nullptr) {
    return absl::UnavailableError(absl::StrCat(address(), ": ", ctx_->c->errstr));
  }
  auto* reply = static_cast<redisReply*>(raw);
  RespValue value = Convert(reply);
  freeReplyObject(reply);
  return value;
}

absl::StatusOr<RespValue> RedisClient::Command(absl::Span<const std::string_view> args) {
  if (!ok()) return absl::FailedPreconditionError(absl::StrCat(address(), ": connection broken"));
  std::vector<const char*> argv;
  std::vector<size_t> argvlen;
  argv.reserve(args.size());
  argvlen.reserve(args.size());
  for (std::string_view a : args) {
    argv.push_back(a.data());
    argvlen.push_back(a.size());
  }
  if (redisAppendCommandArgv(ctx_->c, static_cast<int>(args.size()), argv.data(),
                             argvlen.data()) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat(address(), ": ", ctx_->c->errstr));
  }
  return ReadReply();
}

absl::StatusOr<std::vector<RespValue>> RedisClient::Pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  if (!ok()) return absl::FailedPreconditionError(absl::StrCat(address(), ": connection broken"));
  for (const auto& cmd : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> argvlen;
    for (const std::string& a : cmd) {
      argv.push_back(a.data());
      argvlen.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_->c, static_cast<int>(cmd.size()), argv.data(),
                               argvlen.data()) != REDIS_OK) {
      return absl::UnavailableError(absl::StrCat(address(), ": ", ctx_->c->errstr));
    }
  }
  std::vector<RespValue> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    absl::StatusOr<RespValue> r = ReadReply();
    if (!r.ok()) return r.status();
    replies.push_back(*std::move(r));
  }
  return replies;
}

void RedisClient::SetCommandTimeout(std::chrono::milliseconds timeout) {
  redisSetTimeout(ctx_->c, ToTimeval(timeout));
}

bool RedisClient::ok() const { return ctx_ && ctx_->c != nullptr && ctx_->c->err == 0; }

}  // namespace slotpilot::migration
