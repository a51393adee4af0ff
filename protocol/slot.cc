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

// Slicing-by-8: kSlices[k][b] is the CRC of byte b followed by k zero bytes. The CRC is linear,
// so eight bytes (the running CRC folded into the first two) combine with eight independent
// lookups instead of a chain of eight dependent ones: keys are short, but this is on every request.
using SliceTables = std::array<std::array<uint16_t, 256>, 8>;
constexpr SliceTables MakeSliceTables() {
  SliceTables t{};
  t[0] = MakeCrc16Table();
  for (int k = 1; k < 8; ++k) {
    for (int b = 0; b < 256; ++b) {
      uint16_t prev = t[k - 1][b];
      t[k][b] = static_cast<uint16_t>((prev << 8) ^ t[0][prev >> 8]);
    }
  }
  return t;
}

constexpr SliceTables kSlices = MakeSliceTables();

}  // namespace

uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    crc = static_cast<uint16_t>(
        kSlices[7][p[0] ^ (crc >> 8)] ^ kSlices[6][p[1] ^ (crc & 0xFF)] ^ kSlices[5][p[2]] ^
        kSlices[4][p[3]] ^ kSlices[3][p[4]] ^ kSlices[2][p[5]] ^ kSlices[1][p[6]] ^ kSlices[0][p[7]]);
  }
  for (; n > 0; --n, ++p) {
    crc = static_cast<uint16_t>((crc << 8) ^ kSlices[0][static_cast<uint8_t>((crc >> 8) ^ *p)]);
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
