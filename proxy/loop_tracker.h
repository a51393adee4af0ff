// Per-slot redirect-loop statistics of one worker, bounded in memory, and the bounded queue that
// carries loop reports from workers to the control thread (and from there to the watcher).
//
// Threads: Record() on the owning worker's loop; Snapshot() from the admin thread. Loops are off
// the steady-state hot path (a looping request has already cost two round trips), so a mutex that
// the admin takes a few times a minute is fine here.
#ifndef SLOTPILOT_PROXY_LOOP_TRACKER_H_
#define SLOTPILOT_PROXY_LOOP_TRACKER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "proxy/loop_detector.h"

namespace slotpilot::proxy {

struct LoopNode {
  std::string address;
  std::string id;  // empty when the node is not in the topology (yet)
  friend bool operator==(const LoopNode&, const LoopNode&) = default;
};

struct LoopRecord {
  uint16_t slot = 0;
  LoopPattern pattern = LoopPattern::kNone;
  uint64_t count = 0;
  std::vector<LoopNode> nodes;
  absl::Time first_seen;
  absl::Time last_seen;
  std::string last_chain;
};

class LoopTracker {
 public:
  // `max_slots`: slots tracked at once (least recently seen evicted); `ttl`: records not seen for
  // this long are dropped.
  LoopTracker(size_t max_slots, absl::Duration ttl) : max_slots_(max_slots), ttl_(ttl) {}

  // Counts one looping request. Returns true when the control thread should hear about it
  // (at most once per `report_interval` per slot, so a storm produces few reports).
  bool Record(uint16_t slot, LoopPattern pattern, std::vector<LoopNode> nodes, std::string chain,
              absl::Time now, absl::Duration report_interval);
  std::vector<LoopRecord> Snapshot(absl::Time now) const;

 private:
  struct Entry {
    LoopRecord record;
    absl::Time last_reported = absl::InfinitePast();
  };
  void EvictOldest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_slots_;
  const absl::Duration ttl_;
  mutable std::mutex mu_;
  absl::flat_hash_map<uint16_t, Entry> by_slot_ ABSL_GUARDED_BY(mu_);
};

// Merges the records of several workers by slot: counts add up, first/last seen widen, pattern,
// nodes and chain come from the most recent. Sorted newest first.
std::vector<LoopRecord> MergeLoopRecords(const std::vector<std::vector<LoopRecord>>& per_worker);

struct LoopReport {
  uint16_t slot = 0;
  LoopPattern pattern = LoopPattern::kNone;
  std::vector<LoopNode> nodes;
  absl::Time at;
};

// Multi-producer queue of loop reports with a fixed capacity: a full queue drops and counts,
// never blocks a worker. `notify` (e.g. uv_async_send) is called after a successful push.
class LoopReportQueue {
 public:
  explicit LoopReportQueue(size_t capacity) : capacity_(capacity) {}
  void SetNotify(std::function<void()> notify) { notify_ = std::move(notify); }
  bool Push(LoopReport report);
  std::vector<LoopReport> Drain();
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t pushed() const { return pushed_.load(std::memory_order_relaxed); }

 private:
  const size_t capacity_;
  std::function<void()> notify_;
  std::mutex mu_;
  std::vector<LoopReport> items_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> pushed_{0};
};

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_LOOP_TRACKER_H_
