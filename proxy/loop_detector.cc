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
  // Sent back to a node that already redirected this request (or a node pointing at itself).
  bool revisits = std::any_of(chain.begin(), chain.end(),
                              [&](const HopChain::Hop& h) { return h.from_node == last.to_node; });
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
