#include "proxy/stats.h"

#include <algorithm>

namespace slotpilot::proxy {

void Histogram::Observe(uint64_t us) {
  size_t i = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us) - kBoundsUs.begin();
  buckets_[i].Add();
  count_.Add();
  sum_us_.Add(us);
}

std::string_view CommandClassName(CommandClass c) {
  switch (c) {
    case CommandClass::kRead: return "read";
    case CommandClass::kWrite: return "write";
    case CommandClass::kLocal: return "local";
    case CommandClass::kOther: return "other";
    case CommandClass::kCount: break;
  }
  return "unknown";
}

std::string_view RetryReasonName(RetryReason r) {
  switch (r) {
    case RetryReason::kTryAgain: return "tryagain";
    case RetryReason::kClusterDown: return "clusterdown";
    case RetryReason::kLoading: return "loading";
    case RetryReason::kMasterDown: return "masterdown";
    case RetryReason::kCount: break;
  }
  return "unknown";
}

}  // namespace slotpilot::proxy
