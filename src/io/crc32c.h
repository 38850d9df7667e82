// CRC-32C (Castagnoli): the checksum of TFRecord framing (TensorBoard event files) and of kiln's
// own record formats. Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF, so
// crc32c("123456789") == 0xE3069283 (the standard check value; also iSCSI, ext4, LevelDB).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::io {

// The CRC of n bytes at data. `crc` is the CRC of the bytes before them, so a buffer can be
// checksummed in pieces: crc32c(b, nb, crc32c(a, na)) == crc32c(a then b). 0 starts afresh.
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0);

// TFRecord's masked CRC: a CRC stored next to the bytes it covers is rotated and offset, because
// the CRC of data that itself contains CRCs is weak (TensorFlow's lib/hash/crc32c.h explains).
std::uint32_t mask_crc32c(std::uint32_t crc);
std::uint32_t masked_crc32c(const void* data, std::size_t n);  // mask_crc32c(crc32c(data, n))

}  // namespace kiln::io
