// Redirect-loop classification over a request's hop chain.
//
// A chain loops when a redirect sends the request back to a node that already redirected it for
// the same slot (with the same ASKING flag: a node revisited after an ASK may serve it), or when
// it grows past max-redirects. Patterns (MIGRATION.md A.3):
//   ask-moved   A -ASK-> B -MOVED-> A: source MIGRATING, target not IMPORTING (half-open migration)
//   moved-moved A -MOVED-> B -MOVED-> A: masters disagree on the owner
//   hop-limit   anything else past max-redirects
// One extra MOVED right after a slot changed owner ends at a node that serves the slot: no repeat,
// not a loop. Pure functions: no I/O, no state.
#ifndef SLOTPILOT_PROXY_LOOP_DETECTOR_H_
#define SLOTPILOT_PROXY_LOOP_DETECTOR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/request.h"

namespace slotpilot::proxy {

enum class LoopPattern : uint8_t { kNone, kAskMoved, kMovedMoved, kHopLimit };
std::string_view LoopPatternName(LoopPattern p);
// "migration incomplete" and friends: what the pattern means for an operator.
std::string_view LoopPatternMeaning(LoopPattern p);

// Classifies `chain` whose last hop was just added. kNone: keep following.
LoopPattern ClassifyChain(const HopChain& chain, int max_redirects);

// "ASK 10.0.0.1:7000 -> MOVED 10.0.0.2:7001" using `address_of(node)` for node names.
template <typename AddressOf>
std::string DescribeChain(const HopChain& chain, AddressOf&& address_of) {
  std::string out;
  for (size_t i = 0; i < chain.size(); ++i) {
    if (i > 0) out += " -> ";
    out += chain[i].kind == RedirectKind::kAsk ? "ASK " : "MOVED ";
    out += address_of(chain[i].to_node);
  }
  return out;
}

// The nodes of a chain in first-seen order (the source node first).
std::vector<uint16_t> ChainNodes(const HopChain& chain);

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_LOOP_DETECTOR_H_
