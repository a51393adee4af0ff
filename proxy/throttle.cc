#include "proxy/throttle.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "proxy/config.h"

namespace slotpilot::proxy {

const char* ThrottleModeName(ThrottleOptions::Mode mode) {
  switch (mode) {
    case ThrottleOptions::Mode::kOff: return "off";
    case ThrottleOptions::Mode::kNode: return "node";
    case ThrottleOptions::Mode::kSlot: return "slot";
  }
  return "unknown";
}

ThrottleOptions ThrottleOptionsFromConfig(const Config& c) {
  ThrottleOptions o;
  switch (c.throttle) {
    case ThrottleMode::kOff: o.mode = ThrottleOptions::Mode::kOff; break;
    case ThrottleMode::kNode: o.mode = ThrottleOptions::Mode::kNode; break;
    case ThrottleMode::kSlot: o.mode = ThrottleOptions::Mode::kSlot; break;
  }
  o.rate = c.throttle_rate;
  o.fraction = c.throttle_fraction;
  o.burst_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(c.throttle_burst));
  o.max_delay_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(c.throttle_max_delay));
  o.exempt_reads = c.throttle_exempt_reads;
  o.workers = c.threads;
  return o;
}

void TokenBucket::Configure(double rate_per_s, double burst, uint64_t now_ms) {
  Refill(now_ms);
  rate_ = std::max(0.0, rate_per_s);
  burst_ = std::max(1.0, burst);
  tokens_ = std::min(tokens_, burst_);
}

void TokenBucket::Reset(uint64_t now_ms) {
  tokens_ = burst_;
  last_ms_ = now_ms;
}

void TokenBucket::Refill(uint64_t now_ms) {
  if (now_ms <= last_ms_) return;  // a clock that stands still (or a late caller) adds nothing
  tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_ms - last_ms_) * rate_ / 1000.0);
  last_ms_ = now_ms;
}

bool TokenBucket::TryTake(uint64_t now_ms) {
  Refill(now_ms);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

double TokenBucket::tokens(uint64_t now_ms) {
  Refill(now_ms);
  return tokens_;
}

void RateMeter::Tick(uint64_t now_ms, bool hold_average) {
  if (!started_) {  // the first tick only starts the first interval
    started_ = true;
    last_tick_ms_ = now_ms;
    count_ = 0;
    return;
  }
  if (now_ms <= last_tick_ms_) return;
  uint64_t dt = now_ms - last_tick_ms_;
  last_ = static_cast<double>(count_) * 1000.0 / static_cast<double>(dt);
  if (hold_average) {
    // keep average_ as it was
  } else if (!primed_) {
    average_ = last_;
    primed_ = true;
  } else {
    double alpha = 1.0 - std::exp(-static_cast<double>(dt) / static_cast<double>(tau_ms_));
    average_ += alpha * (last_ - average_);
  }
  count_ = 0;
  last_tick_ms_ = now_ms;
}

double WorkerBudget(const ThrottleOptions& o, double baseline) {
  double workers = static_cast<double>(std::max(1, o.workers));
  if (o.rate > 0) return o.rate / workers;
  return std::max(o.fraction * baseline, o.min_budget / workers);
}

double BurstFor(const ThrottleOptions& o, double budget) {
  return std::max(1.0, budget * static_cast<double>(o.burst_ms) / 1000.0);
}

std::vector<ThrottleNodeReport> MergeThrottleReports(
    const std::vector<std::vector<ThrottleNodeReport>>& per_worker) {
  std::map<std::string, ThrottleNodeReport> by_address;
  for (const auto& reports : per_worker) {
    for (const ThrottleNodeReport& r : reports) {
      auto [it, inserted] = by_address.try_emplace(r.address, r);
      if (inserted) continue;
      ThrottleNodeReport& m = it->second;
      m.budget += r.budget;
      m.rate += r.rate;
      m.waiting += r.waiting;
      if (r.evidence == "watcher") m.evidence = r.evidence;
      for (uint16_t s : r.slots) {
        if (std::find(m.slots.begin(), m.slots.end(), s) == m.slots.end()) m.slots.push_back(s);
      }
    }
  }
  std::vector<ThrottleNodeReport> out;
  for (auto& [address, r] : by_address) {
    std::sort(r.slots.begin(), r.slots.end());
    out.push_back(std::move(r));
  }
  return out;
}

std::string AddThrottleJson(const std::string& migrations_json,
                            const std::vector<ThrottleNodeReport>& nodes) {
  nlohmann::json out = nlohmann::json::parse(migrations_json, nullptr, /*allow_exceptions=*/false);
  if (!out.is_object()) out = nlohmann::json::object();
  nlohmann::json list = nlohmann::json::array();
  for (const ThrottleNodeReport& n : nodes) {
    list.push_back({{"node", n.address}, {"slots", n.slots}, {"evidence", n.evidence},
                    {"budget_ops", std::round(n.budget * 10) / 10}, {"rate_ops", std::round(n.rate * 10) / 10},
                    {"waiting", n.waiting}});
  }
  out["throttled_nodes"] = std::move(list);
  return out.dump() + "\n";
}

}  // namespace slotpilot::proxy
