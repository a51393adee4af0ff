// What the migration watcher publishes to the workers: an immutable, versioned snapshot.
// Workers read it on their own loop after it arrives through their mailbox.
#ifndef SLOTPILOT_PROXY_MIGRATION_STATE_H_
#define SLOTPILOT_PROXY_MIGRATION_STATE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/slot.h"

namespace slotpilot::proxy {

struct MigrationState {
  uint64_t version = 0;
  // Bumped for a slot each time the watcher repairs it: requests held in a redirect loop on that
  // slot are retried when its generation changes.
  std::array<uint32_t, protocol::kSlotCount> repair_generation{};
  // A repair committed since the previous state: slot owners changed (an unassigned slot may
  // have been assigned, which no MOVED would ever announce), so the slot map needs a refresh.
  bool owners_changed = false;

  // Every slot the watcher sees open (MIGRATING and/or IMPORTING somewhere), sorted by slot,
  // except slots whose repair just committed. The throttle slows client traffic to `source_*`.
  struct OpenSlot {
    uint16_t slot = 0;
    std::string source_host;  // empty when the source is not a known master
    uint16_t source_port = 0;
    std::string target;       // "host:port", for display
    bool operator==(const OpenSlot&) const = default;
  };
  std::vector<OpenSlot> open_slots;
};

using MigrationStateSnapshot = std::shared_ptr<const MigrationState>;

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_MIGRATION_STATE_H_
