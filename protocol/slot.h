// Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its {hash tag}, mod 16384.
#ifndef SLOTPILOT_PROTOCOL_SLOT_H_
#define SLOTPILOT_PROTOCOL_SLOT_H_

#include <cstdint>
#include <string_view>

namespace slotpilot::protocol {

inline constexpr int kSlotCount = 16384;

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis's crc16.c.
uint16_t Crc16(std::string_view data);

// Slot of a key with Redis's hash-tag rule (keyHashSlot in cluster.c): if the key contains '{'
// followed later by '}' with at least one byte between the first '{' and the first '}' after it,
// only those bytes are hashed.
uint16_t KeyHashSlot(std::string_view key);

}  // namespace slotpilot::protocol

#endif  // SLOTPILOT_PROTOCOL_SLOT_H_
