// The public surface of slotpilot_protocol: pure RESP and Redis Cluster logic, no I/O.
#ifndef SLOTPILOT_PROTOCOL_PROTOCOL_H_
#define SLOTPILOT_PROTOCOL_PROTOCOL_H_

#include "protocol/command_table.h"
#include "protocol/errors.h"
#include "protocol/reply_parser.h"
#include "protocol/request_parser.h"
#include "protocol/resp.h"
#include "protocol/slot.h"
#include "protocol/topology.h"

#endif  // SLOTPILOT_PROTOCOL_PROTOCOL_H_
