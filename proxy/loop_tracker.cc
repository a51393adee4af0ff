#include "proxy/loop_tracker.h"

#include <algorithm>

namespace slotpilot::proxy {

bool LoopTracker::Record(uint16_t slot, LoopPattern pattern, std::vector<LoopNode> nodes,
                         std::string chain, absl::Time now, absl::Duration report_interval) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_slot_.find(slot);
  if (it == by_slot_.end()) {
    if (by_slot_.size() >= max_slots_) EvictOldest();
    it = by_slot_.emplace(slot, Entry{}).first;
  } else if (now - it->second.record.last_seen > ttl_) {
    it->second = Entry{};  // expired (Snapshot no longer shows it): a new loop, a new record
  }
  if (it->second.record.count == 0) {
    it->second.record.slot = slot;
    it->second.record.first_seen = now;
  }
  LoopRecord& r = it->second.record;
  ++r.count;
  r.pattern = pattern;
  r.nodes = std::move(nodes);
  r.last_seen = now;
  r.last_chain = std::move(chain);
  if (now - it->second.last_reported < report_interval) return false;
  it->second.last_reported = now;
  return true;
}

void LoopTracker::EvictOldest() {
  auto oldest = by_slot_.begin();
  for (auto it = by_slot_.begin(); it != by_slot_.end(); ++it) {
    if (it->second.record.last_seen < oldest->second.record.last_seen) oldest = it;
  }
  if (oldest != by_slot_.end()) by_slot_.erase(oldest);
}

std::vector<LoopRecord> LoopTracker::Snapshot(absl::Time now) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LoopRecord> out;
  out.reserve(by_slot_.size());
  for (const auto& [slot, entry] : by_slot_) {
    if (now - entry.record.last_seen <= ttl_) out.push_back(entry.record);
  }
  return out;
}

std::vector<LoopRecord> MergeLoopRecords(const std::vector<std::vector<LoopRecord>>& per_worker) {
  absl::flat_hash_map<uint16_t, LoopRecord> merged;
  for (const auto& records : per_worker) {
    for (const LoopRecord& r : records) {
      auto [it, inserted] = merged.try_emplace(r.slot, r);
      if (inserted) continue;
      LoopRecord& m = it->second;
      m.count += r.count;
      m.first_seen = std::min(m.first_seen, r.first_seen);
      if (r.last_seen > m.last_seen) {
        m.last_seen = r.last_seen;
        m.pattern = r.pattern;
        m.nodes = r.nodes;
        m.last_chain = r.last_chain;
      }
    }
  }
  std::vector<LoopRecord> out;
  out.reserve(merged.size());
  for (auto& [slot, r] : merged) out.push_back(std::move(r));
  std::sort(out.begin(), out.end(), [](const LoopRecord& a, const LoopRecord& b) {
    return a.last_seen != b.last_seen ? a.last_seen > b.last_seen : a.slot < b.slot;
  });
  return out;
}

bool LoopReportQueue::Push(LoopReport report) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (items_.size() >= capacity_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    items_.push_back(std::move(report));
  }
  pushed_.fetch_add(1, std::memory_order_relaxed);
  if (notify_) notify_();
  return true;
}

std::vector<LoopReport> LoopReportQueue::Drain() {
  std::vector<LoopReport> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(items_);
  return out;
}

}  // namespace slotpilot::proxy
