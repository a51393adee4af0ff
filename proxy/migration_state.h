// What the migration watcher publishes to the workers: an immutable, versioned snapshot.
// Workers read it on their own loop after it arrives through their mailbox.
#ifndef SLOTPILOT_PROXY_MIGRATION_STATE_H_
#define SLOTPILOT_PROXY_MIGRATION_STATE_H_

#include <array>
#include <cstdint>
#include <memory>

#include "protocol/slot.h"

namespace slotpilot::proxy {

struct MigrationState {
  uint64_t version = 0;
  // Bumped for a slot each time the watcher repairs it: requests held in a redirect loop on that
  // slot are retried when its generation changes.
  std::array<uint32_t, protocol::kSlotCount> repair_generation{};
};

using MigrationStateSnapshot = std::shared_ptr<const MigrationState>;

}  // namespace slotpilot::proxy

#endif  // SLOTPILOT_PROXY_MIGRATION_STATE_H_
