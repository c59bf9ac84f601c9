// Element-type table and parsing.
#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "core/error.h"

namespace lmkit {

namespace {
struct Entry {
  DType t;
  DTypeInfo info;
};
// Block sizes and bytes per the GGUF spec (ggml-common.h): e.g. q4_0 is an f16 scale + 16 bytes of
// nibbles per 32 values; the K-quants pack 256 values per super-block.
constexpr std::array<Entry, 19> kTypes{{
    {DType::F32, {"f32", 1, 4}},
    {DType::F16, {"f16", 1, 2}},
    {DType::BF16, {"bf16", 1, 2}},
    {DType::Q4_0, {"q4_0", 32, 18}},
    {DType::Q4_1, {"q4_1", 32, 20}},
    {DType::Q5_0, {"q5_0", 32, 22}},
    {DType::Q5_1, {"q5_1", 32, 24}},
    {DType::Q8_0, {"q8_0", 32, 34}},
    {DType::Q8_1, {"q8_1", 32, 36}},
    {DType::Q4_K, {"q4_K", 256, 144}},
    {DType::Q5_K, {"q5_K", 256, 176}},
    {DType::Q6_K, {"q6_K", 256, 210}},
    {DType::Q8_K, {"q8_K", 256, 292}},
    {DType::Q4_0X8, {"q4_0x8", 256, 144}},
    {DType::I8, {"i8", 1, 1}},
    {DType::I16, {"i16", 1, 2}},
    {DType::I32, {"i32", 1, 4}},
    {DType::I64, {"i64", 1, 8}},
    {DType::F64, {"f64", 1, 8}},
}};
}  // namespace

const DTypeInfo &dtype_info(DType t) {
  for (const auto &e : kTypes)
    if (e.t == t) return e.info;
  fail("unsupported tensor type ", uint32_t(t));
}

size_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeInfo &i = dtype_info(t);
  LMKIT_CHECK(n >= 0 && n % i.block == 0, "a row of ", n, " elements is not a whole number of ",
              i.name, " blocks (", i.block, ")");
  return size_t(n / i.block) * i.block_bytes;
}

DType dtype_from_name(std::string_view name) {
  auto lower = [](std::string_view s) {
    std::string low(s);
    for (char &c : low) c = char(std::tolower(static_cast<unsigned char>(c)));
    return low;
  };
  const std::string low = lower(name);
  std::string names;
  for (const auto &e : kTypes) {
    if (lower(e.info.name) == low) return e.t;
    names += (names.empty() ? "" : ", ") + std::string(e.info.name);
  }
  fail("unknown dtype '", name, "' (expected one of ", names, ")");
}

}  // namespace lmkit
