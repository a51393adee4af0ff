// The seam between the watcher (which decides that a slot needs repair) and the finisher (which
// repairs it). The watcher owns the decision and the audit of decisions; the repairer owns every
// mutating command, the lease, preflight and verification.
//
// Threading: Repair is called on the watcher's thread only, one slot at a time, and blocks it;
// polls stop meanwhile. It must return in bounded time (every command has a timeout, every loop
// a budget). Watcher::Stop waits for a Repair in flight.
#ifndef SLOTPILOT_MIGRATION_REPAIR_H_
#define SLOTPILOT_MIGRATION_REPAIR_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "migration/stuck_detector.h"
#include "protocol/strings.h"

namespace slotpilot::migration {

enum class RepairKind {
  kFinish,    // run the assessment's `plan` (forward / close / drain / commit / assign)
  kRollback,  // run the assessment's `rollback` (only when it is non-empty: S3, S1b)
};
std::string_view RepairKindName(RepairKind k);  // "finish" / "rollback"

struct RepairOutcome {
  enum class Result {
    kDone,         // the slot is stable and verified (every master agrees, counts add up)
    kNothingToDo,  // a fresh poll found the slot healthy, or no longer matching `plan`
    kDeferred,     // did not start: lease held elsewhere, preflight refused, cluster unhealthy
    kFailed,       // a step failed; the state was re-observed and is described in `error`
  };
  Result result = Result::kFailed;
  bool mutated = false;            // at least one mutating command was sent
  std::string summary;             // one line for the status and the audit trail
  std::vector<std::string> steps;  // the steps that ran, in order, with their replies
  int64_t keys_moved = 0;
  int64_t bytes_moved = 0;
  std::string lease_holder;  // the holder, when deferred because of a foreign lease
  std::string error;         // for kFailed / kDeferred

  bool success() const { return result == Result::kDone; }
};
std::string_view RepairResultName(RepairOutcome::Result r);  // "done", "nothing-to-do", ...

// Implemented by the finisher (migration/finisher.h). Not owned by the watcher; must outlive it.
class SlotRepairer {
 public:
  virtual ~SlotRepairer() = default;
  // Repairs `slot`. Blocking. `plan` is the assessment from the watcher's latest poll, to say
  // what was intended and to be shown in the audit; the repairer must re-derive everything from
  // fresh polls (AssessSlot on its own snapshot) and refuse when the signature, the direction or
  // the completeness (`complete`) no longer hold. Returns what happened, for the audit trail.
  virtual RepairOutcome Repair(uint16_t slot, const SlotAssessment& plan, RepairKind kind) = 0;
};

// --- Audit trail --------------------------------------------------------------------------------
// One structured log line per decision or step, through spdlog's default logger at info:
//   audit component=watcher event=verdict slot=100 verdict=stuck signature=interrupted-reshard ...
// Values with spaces, quotes or '=' are double-quoted (inner quotes and backslashes escaped).
// The finisher logs its steps the same way with component=finisher.
struct AuditField {
  AuditField(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  AuditField(std::string_view k, std::string_view v) : key(k), value(v) {}
  AuditField(std::string_view k, const char* v) : key(k), value(v) {}
  AuditField(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <typename T,
            typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                        !std::is_same_v<T, char>>>
  AuditField(std::string_view k, T v) : key(k), value(StrCat(v)) {}

  std::string_view key;  // a literal: must outlive the call
  std::string value;
};
std::string AuditLine(std::string_view component, std::string_view event,
                      std::initializer_list<AuditField> fields);
void Audit(std::string_view component, std::string_view event,
           std::initializer_list<AuditField> fields);

}  // namespace slotpilot::migration

#endif  // SLOTPILOT_MIGRATION_REPAIR_H_
