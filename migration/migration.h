// The public surface of slotpilot_migration: the control plane that talks to the cluster.
#ifndef SLOTPILOT_MIGRATION_MIGRATION_H_
#define SLOTPILOT_MIGRATION_MIGRATION_H_

#include "migration/cluster_view.h"
#include "migration/finisher.h"
#include "migration/lease.h"
#include "migration/redis_client.h"
#include "migration/repair.h"
#include "migration/stuck_detector.h"
#include "migration/watcher.h"

#endif  // SLOTPILOT_MIGRATION_MIGRATION_H_
