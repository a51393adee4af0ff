// The public surface of slotpilot_migration: the control plane that talks to the cluster.
#ifndef SLOTPILOT_MIGRATION_MIGRATION_H_
#define SLOTPILOT_MIGRATION_MIGRATION_H_

#include "migration/redis_client.h"

#endif  // SLOTPILOT_MIGRATION_MIGRATION_H_
