#include "proxy/fanout.h"

#include <random>

#include "protocol/resp.h"
#include "protocol/strings.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace slotpilot::proxy {
namespace {

bool IsError(const Slice& reply) { return !reply.empty() && reply.data()[0] == '-'; }

// Every SCRIPT KILL error but NOTBUSY says more than NOTBUSY (UNKILLABLE, a node unreachable).
bool IsNotBusy(const Slice& reply) { return reply.view().substr(0, 8) == "-NOTBUSY"; }

}  // namespace

FanOut::FanOut(Request* parent, MergeKind kind) : parent_(parent), kind_(kind) {}

// Abandon() hands the connections to the worker before the parent can be freed.
FanOut::~FanOut() = default;

void FanOut::OwnConnection(std::unique_ptr<Upstream> connection) {
  connections_.push_back(std::move(connection));
}

void FanOut::AddChild(Worker* worker, Request* child) {
  child->parent = parent_;
  child->child_index = static_cast<uint32_t>(children_.size());
  worker->Retain(parent_);  // released when the child is freed
  worker->Retain(child);
  children_.push_back(child);
  ++remaining_;
}

void FanOut::OnChildDone(Worker* worker, Request* child) {
  if (released_ || remaining_ == 0) return;
  if (--remaining_ > 0) return;
  std::string merged;
  bool ok = Merge(&merged);
  Request* parent = parent_;
  Abandon(worker);  // children are no longer needed; parent may be freed by Complete's caller
  worker->Complete(parent, worker->arena().Copy(merged), !ok);
}

void FanOut::Abandon(Worker* worker) {
  if (released_) return;
  released_ = true;
  std::vector<Request*> children = std::move(children_);
  children_.clear();
  for (Request* c : children) worker->Release(c);
  for (auto& connection : connections_) worker->RetireUpstream(std::move(connection));
  connections_.clear();
}

bool FanOut::FirstError(std::string* out) const {
  for (const Request* c : children_) {
    if (IsError(c->reply)) {
      out->assign(c->reply.data(), c->reply.size());
      return true;
    }
  }
  return false;
}

bool FanOut::Merge(std::string* out) const {
  // Custom merges and SCRIPT KILL weigh the children's errors themselves.
  if (kind_ != MergeKind::kCustom && kind_ != MergeKind::kAnyOk && FirstError(out)) return false;
  switch (kind_) {
    case MergeKind::kAllOk:
      for (const Request* c : children_) {
        if (c->reply.view() != "+OK\r\n") {
          out->assign(c->reply.data(), c->reply.size());
          return false;
        }
      }
      *out = "+OK\r\n";
      return true;
    case MergeKind::kSumIntegers: {
      int64_t sum = 0;
      for (const Request* c : children_) {
        std::optional<int64_t> v = protocol::IntegerReply(c->reply.view());
        if (!v) {
          protocol::AppendError(out, "ERR slotpilot: unexpected reply from a node while merging");
          return false;
        }
        sum += *v;
      }
      protocol::AppendInteger(out, sum);
      return true;
    }
    case MergeKind::kArrayByKey: {
      std::vector<std::vector<std::string_view>> elements(children_.size());
      for (size_t i = 0; i < children_.size(); ++i) {
        if (!protocol::SplitArrayElements(children_[i]->reply.view(), &elements[i]).ok()) {
          protocol::AppendError(out, "ERR slotpilot: unexpected reply from a node while merging");
          return false;
        }
      }
      protocol::AppendArrayHeader(out, static_cast<int64_t>(key_map_.size()));
      for (const auto& [child, element] : key_map_) {
        if (element >= elements[child].size()) {
          out->clear();
          protocol::AppendError(out, "ERR slotpilot: short reply from a node while merging");
          return false;
        }
        out->append(elements[child][element]);
      }
      return true;
    }
    case MergeKind::kConcatArrays: {
      std::vector<std::string_view> all, part;
      for (const Request* c : children_) {
        if (!protocol::SplitArrayElements(c->reply.view(), &part).ok()) {
          protocol::AppendError(out, "ERR slotpilot: unexpected reply from a node while merging");
          return false;
        }
        all.insert(all.end(), part.begin(), part.end());
      }
      protocol::AppendArrayHeader(out, static_cast<int64_t>(all.size()));
      for (std::string_view e : all) out->append(e);
      return true;
    }
    case MergeKind::kSameReply:
      for (const Request* c : children_) {
        if (c->reply.view() != children_[0]->reply.view()) {
          protocol::AppendError(out, "ERR slotpilot: masters answered differently; the command may have applied on some only");
          return false;
        }
      }
      out->assign(children_[0]->reply.data(), children_[0]->reply.size());
      return true;
    case MergeKind::kAndIntegers: {
      std::vector<std::vector<std::string_view>> elements(children_.size());
      for (size_t i = 0; i < children_.size(); ++i) {
        if (!protocol::SplitArrayElements(children_[i]->reply.view(), &elements[i]).ok() ||
            elements[i].size() != elements[0].size()) {
          protocol::AppendError(out, "ERR slotpilot: unexpected reply from a node while merging");
          return false;
        }
      }
      protocol::AppendArrayHeader(out, static_cast<int64_t>(elements[0].size()));
      for (size_t e = 0; e < elements[0].size(); ++e) {
        int64_t all = 1;
        for (const auto& child : elements) all = all && protocol::IntegerReply(child[e]).value_or(0) != 0;
        if (scripts != nullptr && e < script_shas.size() && scripts->Contains(script_shas[e])) all = 1;
        protocol::AppendInteger(out, all);
      }
      return true;
    }
    case MergeKind::kRandomNonNil: {
      std::vector<const Request*> hits;
      for (const Request* c : children_) {
        if (c->reply.view() != "$-1\r\n") hits.push_back(c);
      }
      if (hits.empty()) {
        *out = "$-1\r\n";
        return true;
      }
      thread_local std::minstd_rand rng{std::random_device{}()};
      const Request* pick = hits[rng() % hits.size()];
      out->assign(pick->reply.data(), pick->reply.size());
      return true;
    }
    case MergeKind::kAnyOk: {
      const Request* telling = children_[0];
      for (const Request* c : children_) {
        if (c->reply.view() == "+OK\r\n") {
          *out = "+OK\r\n";
          return true;
        }
        if (IsNotBusy(telling->reply) && !IsNotBusy(c->reply)) telling = c;
      }
      out->assign(telling->reply.data(), telling->reply.size());
      return false;
    }
    case MergeKind::kCustom: {
      std::string error;
      *out = custom_(*this, &error);
      if (!error.empty()) {
        out->clear();
        protocol::AppendError(out, error);
        return false;
      }
      return true;
    }
  }
  return false;
}

}  // namespace slotpilot::proxy
