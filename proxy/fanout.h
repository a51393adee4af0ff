// One client request answered by several sub-requests: a multi-key command split per slot (MGET,
// MSET, DEL, ...), or a keyspace-wide command sent to every master (DBSIZE, KEYS, FLUSHALL,
// SCRIPT LOAD, ...). Each sub-request is routed, redirected and retried on its own; when the last
// one is answered their replies are merged, in the client's key order, into the parent's reply.
//
// A failed sub-request fails the whole command with its error: never a partial success reported
// as OK. Ownership: the parent Request owns its FanOut; the FanOut holds a reference on each child
// until it merges (or the parent is answered otherwise); each child holds one on its parent.
// Loop thread only.
#ifndef SLOTPILOT_PROXY_FANOUT_H_
#define SLOTPILOT_PROXY_FANOUT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/request.h"
#include "proxy/script_cache.h"
#include "proxy/sub_requests.h"

namespace slotpilot::proxy {

class Upstream;
class Worker;

enum class MergeKind : uint8_t {
  kArrayByKey,    // MGET: elements of every child, reordered into the original key order
  kAllOk,         // MSET, FLUSHALL, SCRIPT FLUSH, CONFIG SET ...: +OK when every child says +OK
  kSumIntegers,   // DEL, UNLINK, EXISTS, TOUCH, DBSIZE
  kConcatArrays,  // KEYS
  kSameReply,     // SCRIPT LOAD, FUNCTION LOAD/DELETE: every child must agree; that reply
  kAndIntegers,   // SCRIPT EXISTS: element-wise AND of 0/1 arrays
  kRandomNonNil,  // RANDOMKEY: a non-nil reply if any
  kAnyOk,         // SCRIPT KILL: +OK when any child says +OK, else the most telling error
  kCustom,        // merge function given by the caller (it also sees children's errors)
};

class FanOut : public SubRequests {
 public:
  using CustomMerge = std::string (*)(const FanOut& fanout, std::string* error);

  // Out of line, like the destructor: they need Upstream complete.
  FanOut(Request* parent, MergeKind kind);
  ~FanOut() override;

  // Registers a sub-request (takes a reference on it and makes it hold one on the parent).
  void AddChild(Worker* worker, Request* child);
  // MGET: original key position i is element `element` of child `child`.
  void MapKey(uint32_t child, uint32_t element) { key_map_.emplace_back(child, element); }
  void SetCustomMerge(CustomMerge merge) { custom_ = merge; }
  // A connection used only by this fan-out's children; shut down once the parent is answered.
  void OwnConnection(std::unique_ptr<Upstream> connection);
  // Free-form state for custom merges (e.g. SCAN's cursor context, INFO's own sections).
  uint64_t context = 0;
  std::string text;
  // SCRIPT EXISTS: a sha the proxy's ScriptCache knows exists for the client (EVALSHA of it works
  // on every master), whatever each master's own cache says.
  const ScriptCache* scripts = nullptr;
  std::vector<std::string> script_shas;

  // A child was answered. Merges and answers the parent once every child is.
  void OnChildDone(Worker* worker, Request* child) override;
  // The parent was answered some other way (deadline): let go of the children.
  void Abandon(Worker* worker) override;

  const std::vector<Request*>& children() const { return children_; }
  size_t remaining() const { return remaining_; }

 private:
  // The merged reply bytes, or (returning false) the error reply to send instead.
  bool Merge(std::string* out) const;
  bool FirstError(std::string* out) const;

  Request* parent_;
  MergeKind kind_;
  std::vector<Request*> children_;
  std::vector<std::pair<uint32_t, uint32_t>> key_map_;
  size_t remaining_ = 0;
  CustomMerge custom_ = nullptr;
  std::vector<std::unique_ptr<Upstream>> connections_;
  bool released_ = false;
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_FANOUT_H_
