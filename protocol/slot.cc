#include "protocol/slot.h"

#include <array>

namespace slotpilot::protocol {
namespace {

// The slot mask: kSlotCount is a power of two, so "mod 16384" is the low 14 bits.
constexpr uint16_t kSlotMask = kSlotCount - 1;
static_assert((kSlotCount & kSlotMask) == 0, "kSlotCount must be a power of two");

// Byte-at-a-time table for the MSB-first CRC with polynomial 0x1021, built at compile time so
// the hot path is one lookup, one shift and one xor per key byte.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int byte = 0; byte < 256; ++byte) {
    uint16_t crc = static_cast<uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

}  // namespace

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (char c : data) {
    const uint8_t index = static_cast<uint8_t>((crc >> 8) ^ static_cast<uint8_t>(c));
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16Table[index]);
  }
  return crc;
}

uint16_t KeyHashSlot(std::string_view key) {
  // Only the first '{' and the first '}' after it count; an empty tag ("{}") or a missing '}'
  // means the whole key is hashed. This must match Redis byte for byte, or we route to the
  // wrong node and pay a MOVED on every request.
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      return Crc16(key.substr(open + 1, close - open - 1)) & kSlotMask;
    }
  }
  return Crc16(key) & kSlotMask;
}

}  // namespace slotpilot::protocol
