// CRC-32C by slicing-by-8: eight 256-entry tables, built at compile time, let the loop consume
// eight bytes per step with independent lookups instead of one byte per dependent lookup. The
// bytes are combined one by one (no unaligned 64-bit loads), so the code is endian-independent.
// No SSE4.2/ARMv8 crc instructions: event files and record headers are small, and the tables are
// portable to every machine kiln builds on.
#include "io/crc32c.h"

#include <array>

namespace kiln::io {

namespace {

constexpr std::uint32_t kPolyReflected = 0x82F63B78u;
constexpr std::uint32_t kMaskDelta = 0xa282ead8u;

using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

// tables[0][b]: the CRC of the single byte b. tables[k][b]: the CRC of b followed by k zero bytes,
// i.e. tables[k-1][b] advanced by one more zero byte.
constexpr Tables make_tables() {
  Tables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c >> 1) ^ ((c & 1u) ? kPolyReflected : 0u);
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xffu];
  return t;
}

constexpr Tables kTables = make_tables();

std::uint32_t advance_byte(std::uint32_t state, std::uint8_t byte) {
  return (state >> 8) ^ kTables[0][(state ^ byte) & 0xffu];
}

// Eight bytes at once: the first four fold into the running state, the last four are looked up
// directly; each table accounts for how many bytes follow its input in the block.
std::uint32_t advance_block8(std::uint32_t state, const std::uint8_t* p) {
  const std::uint32_t lo = state ^ (std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                                    std::uint32_t(p[3]) << 24);
  return kTables[7][lo & 0xffu] ^ kTables[6][(lo >> 8) & 0xffu] ^ kTables[5][(lo >> 16) & 0xffu] ^
         kTables[4][lo >> 24] ^ kTables[3][p[4]] ^ kTables[2][p[5]] ^ kTables[1][p[6]] ^ kTables[0][p[7]];
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  // The register holds the inverted CRC; inverting on entry and exit is what lets a finished CRC
  // be passed back in to continue.
  std::uint32_t state = ~crc;
  for (; n >= 8; n -= 8, p += 8) state = advance_block8(state, p);
  for (; n > 0; --n, ++p) state = advance_byte(state, *p);
  return ~state;
}

std::uint32_t mask_crc32c(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

std::uint32_t masked_crc32c(const void* data, std::size_t n) { return mask_crc32c(crc32c(data, n)); }

}  // namespace kiln::io
