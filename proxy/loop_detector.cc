#include "proxy/loop_detector.h"

#include <algorithm>

namespace slotpilot::proxy {

std::string_view LoopPatternName(LoopPattern p) {
  switch (p) {
    case LoopPattern::kNone: return "none";
    case LoopPattern::kAskMoved: return "ask-moved";
    case LoopPattern::kMovedMoved: return "moved-moved";
    case LoopPattern::kHopLimit: return "hop-limit";
  }
  return "none";
}

std::string_view LoopPatternMeaning(LoopPattern p) {
  switch (p) {
    case LoopPattern::kAskMoved: return "migration incomplete";
    case LoopPattern::kMovedMoved: return "masters disagree on the slot owner";
    case LoopPattern::kHopLimit: return "too many redirects";
    case LoopPattern::kNone: break;
  }
  return "";
}

LoopPattern ClassifyChain(const HopChain& chain, int max_redirects) {
  size_t n = chain.size();
  if (n == 0) return LoopPattern::kNone;
  const HopChain::Hop& last = chain[n - 1];
  // The next send would repeat one already answered with a redirect: the same node, and the same
  // ASKING flag (send i carried ASKING when hop i-1 was an ASK). A node visited again *with*
  // ASKING may serve what it redirected without it (migrating a slot back to a node the worker's
  // map still names), so that is no repeat. A node pointing at itself repeats at once.
  bool next_asking = last.kind == RedirectKind::kAsk;
  bool revisits = false;
  for (size_t i = 0; i < n && !revisits; ++i) {
    bool sent_asking = i > 0 && chain[i - 1].kind == RedirectKind::kAsk;
    revisits = chain[i].from_node == last.to_node && sent_asking == next_asking;
  }
  if (revisits) {
    if (n >= 2 && last.kind == RedirectKind::kMoved) {
      if (chain[n - 2].kind == RedirectKind::kAsk) return LoopPattern::kAskMoved;
      return LoopPattern::kMovedMoved;
    }
    return LoopPattern::kHopLimit;
  }
  if (n > static_cast<size_t>(max_redirects)) return LoopPattern::kHopLimit;
  return LoopPattern::kNone;
}

std::vector<uint16_t> ChainNodes(const HopChain& chain) {
  std::vector<uint16_t> nodes;
  auto add = [&](uint16_t n) {
    if (std::find(nodes.begin(), nodes.end(), n) == nodes.end()) nodes.push_back(n);
  };
  for (size_t i = 0; i < chain.size(); ++i) {
    add(chain[i].from_node);
    add(chain[i].to_node);
  }
  return nodes;
}

}  // namespace slotpilot::proxy
