// kiln/dtype.h — element types. float32 is the compute type; integer types carry data and labels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln {

enum class DType : std::uint8_t {
  Float32,
  Float16,   // reserved for mixed precision: storage only for now
  BFloat16,  // reserved for mixed precision: storage only for now
  Int32,
  Int64,
  UInt8,
};

std::size_t dtype_size(DType t);
const char* dtype_name(DType t);

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::UInt8; };

}  // namespace kiln
