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
constexpr std::array<Entry, 8> kTypes{{
    {DType::F32, {"f32", 1, 4}},
    {DType::F16, {"f16", 1, 2}},
    {DType::BF16, {"bf16", 1, 2}},
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
  std::string low(name);
  for (char &c : low) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const auto &e : kTypes)
    if (e.info.name == low) return e.t;
  fail("unknown dtype '", name, "' (expected f32, f16 or bf16)");
}

}  // namespace lmkit
