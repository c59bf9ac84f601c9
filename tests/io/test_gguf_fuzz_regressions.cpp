// Tests for the GGUF reader's hardening: every input libFuzzer ever found (fuzz/fuzz_gguf.cpp,
// scripts/fuzz.sh), replayed, and hand-built bad files for each field a writer can get wrong. Each
// must give an lmkit::Error that names the file and the problem, never a crash or a huge
// allocation.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lmkit {
namespace {

// ---- helpers ------------------------------------------------------------------------------------

// A GGUF file built field by field, so that each field can be set to something no writer would.
struct Raw {
  std::string s;
  template <typename T>
  Raw &put(T v) {
    s.append(reinterpret_cast<const char *>(&v), sizeof v);
    return *this;
  }
  Raw &str(const std::string &x) {
    put(uint64_t(x.size()));
    s += x;
    return *this;
  }
  Raw &header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    s = "GGUF";
    return put(version).put(n_tensors).put(n_kv);
  }
  Raw &kv_u32(const std::string &key, uint32_t v) {
    str(key).put(uint32_t(GGUFType::U32));
    return put(v);
  }
  Raw &tensor(const std::string &name, const std::vector<uint64_t> &ne, uint32_t type,
              uint64_t offset) {
    str(name).put(uint32_t(ne.size()));
    for (uint64_t d : ne) put(d);
    return put(type).put(offset);
  }
  Raw &pad(size_t alignment = 32) {
    s.append((alignment - s.size() % alignment) % alignment, '\0');
    return *this;
  }
  Raw &data(size_t n) {
    s.append(n, '\x11');
    return *this;
  }
};

// The result points into `bytes`: keep them alive while it is used.
GGUFFile parse(const std::string &bytes) {
  return GGUFFile::parse(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), "bad.gguf");
}

// Expects an Error naming the file and containing `needle`.
template <typename F>
void expect_error(F &&f, const std::string &needle) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << needle << "')";
  } catch (const Error &e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad.gguf"), std::string::npos)
        << "the message does not name the file: " << msg;
  }
}

void expect_parse_error(const std::string &bytes, const std::string &needle) {
  expect_error([&] { parse(bytes); }, needle);
}

// What the fuzz target does with a file that parses: every getter on every key, every tensor's
// bytes. Getters may throw lmkit::Error; nothing else may happen.
size_t exercise(const GGUFFile &f) {
  size_t sink = 0;
  auto guarded = [&](auto &&fn) {
    try {
      fn();
    } catch (const Error &) {
    }
  };
  for (const auto &kv : f.metadata()) {
    const std::string &key = kv.first;
    guarded([&] { sink += f.get_str(key).size(); });
    guarded([&] { sink += size_t(f.get_int(key)); });
    guarded([&] { sink += f.get_float(key) != 0; });
    guarded([&] { sink += f.get_bool(key, false); });
    guarded([&] { sink += f.get_str_array(key).size(); });
    guarded([&] { sink += f.get_f32_array(key).size(); });
    guarded([&] { sink += f.get_i32_array(key).size(); });
  }
  for (const auto &ti : f.tensors()) {
    guarded([&] {
      Tensor t = f.tensor(ti);
      EXPECT_EQ(t.nbytes(), ti.nbytes) << ti.name;
      const auto *p = static_cast<const uint8_t *>(t.data());
      for (size_t k = 0; k < t.nbytes(); ++k) sink += p[k];
    });
  }
  return sink;
}

std::string from_hex(const char *hex) {
  std::string out;
  for (size_t k = 0; hex[k] && hex[k + 1]; k += 2)
    out += char(std::stoi(std::string(hex + k, 2), nullptr, 16));
  return out;
}

// ---- inputs libFuzzer found
// ----------------------------------------------------------------------

// fuzz_gguf, within its first 1200 executions: the seed "metadata_all_types.gguf" with one byte
// changed, so that tokenizer.ggml.scores holds -1.7e38. get_i32_array cast that double to int32_t:
// undefined behaviour (UBSan: "outside the range of representable values of type 'int'"). Now an
// Error.
TEST(GGUFFuzzRegressions, I32ArrayOfOutOfRangeFloats) {
  const std::string bytes = from_hex(
      "474755460300000001000000000000001100000000000000140000000000000067656e6572616c2e617263686974"
      "65637475"
      "72650800000005000000000000006c6c616d610c0000000000000067656e6572616c2e6e616d6508000000040000"
      "00000000"
      "00736565640200000000000000753800000000c802000000000000006938010000009c0300000000000000753136"
      "02000000"
      "60ea030000000000000069313603000000d08a11000000000000006c6c616d612e626c6f636b5f636f756e740400"
      "00000200"
      "0000030000000000000069333205000000f9ffffff03000000000000007536340a00000000000000000100000300"
      "00000000"
      "00006932380b0000000000000000ffffff14000000000000006c6c616d612e726f70652e667265715f6261736506"
      "00000000"
      "401c4603000000000000006636340c00000000000000000004401c00000000000000746f6b656e697a65722e6767"
      "6d6c2e61"
      "64645f626f735f746f6b656e07000000011500000000000000746f6b656e697a65722e67676d6c2e746f6b656e73"
      "09000000"
      "08000000050000000000000005000000000000003c756e6b3e03000000000000003c733e04000000000000003c2f"
      "733e0100"
      "000000000000610400000000000000e29681621500000000000000746f6b656e697a65722e67676d6c2e73636f72"
      "65730900"
      "0000060000000500000000000000000000ff0000000000000000000080bf000000c01900000000000000746f6b65"
      "6e697a65"
      "722e67676d6c2e746f6b656e5f747970650900000005000000050000000000000002000000030000000300000001"
      "00000001"
      "000000080000000000000075385f6172726179090000000000000003000000000000000102031100000000000000"
      "746f6b65"
      "6e5f656d62642e776569676874020000000800000000000000030000000000000000000000000000000000000000"
      "00000000"
      "0000000001264b7095badf04294e7398bde2072c51769bc0e50a2f54799ec3e80d32577ca1c6eb10355a7fa4c9ee"
      "13385d82"
      "a7ccf1163b6085aacff4193e6388add2f71c41668bb0d5fa1f44698eb3d8fd22476c91b6db00254a6f94b9de0328"
      "4d7297bc");
  ASSERT_EQ(bytes.size(), 800u);
  GGUFFile f = parse(bytes);
  EXPECT_GT(exercise(f), 0u);
  expect_error([&] { f.get_i32_array("tokenizer.ggml.scores"); }, "does not fit in int32");
  EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores")[0], -0x1p127f);
  EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type"), (std::vector<int32_t>{2, 3, 3, 1, 1}));
}

TEST(GGUFFuzzRegressions, I32ArrayRangeIsCheckedPerElement) {
  test::TempDir dir("gguf-i32");
  GGUFWriter w;
  w.set_f32_array("ok", {1.0f, -2.0f, 7.9f});
  w.set_f32_array("big", {1.0f, 3e9f});
  w.set_f32_array("nan", {std::nanf("")});
  w.write(dir / "bad.gguf");
  GGUFFile f = GGUFFile::open(dir / "bad.gguf");
  EXPECT_EQ(f.get_i32_array("ok"), (std::vector<int32_t>{1, -2, 7}));  // truncates, as before
  expect_error([&] { f.get_i32_array("big"); }, "'big' element 1");
  expect_error([&] { f.get_i32_array("nan"); }, "does not fit in int32");
}

// The writer cast every element of a numeric array to int64_t, float arrays included: 1e30 was
// undefined behaviour. Float arrays now round-trip whatever their range.
TEST(GGUFFuzzRegressions, WriterTakesFloatArraysOutsideInt64Range) {
  test::TempDir dir("gguf-wf");
  const float inf = std::numeric_limits<float>::infinity();
  GGUFWriter w;
  w.set_f32_array("f", {1e30f, -1e30f, inf, 0.5f});
  w.set_i32_array("i",
                  {std::numeric_limits<int32_t>::min(), 0, std::numeric_limits<int32_t>::max()});
  w.write(dir / "rt.gguf");
  GGUFFile f = GGUFFile::open(dir / "rt.gguf");
  EXPECT_EQ(f.get_f32_array("f"), (std::vector<float>{1e30f, -1e30f, inf, 0.5f}));
  EXPECT_EQ(f.get_i32_array("i"), (std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 0,
                                                        std::numeric_limits<int32_t>::max()}));
}

// ---- hand-built bad files
// -------------------------------------------------------------------------

// One f32 tensor of 8 values at offset 0: the good file the cases below corrupt.
std::string one_tensor(uint32_t type = 0, std::vector<uint64_t> ne = {8}, uint64_t offset = 0,
                       size_t data = 32) {
  Raw r;
  r.header(1, 0).tensor("w", ne, type, offset).pad().data(data);
  return r.s;
}

TEST(GGUFBadInput, GoodBaselineParses) {
  const std::string bytes = one_tensor();  // parse() keeps pointers into it
  GGUFFile f = parse(bytes);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].nbytes, 32u);
  EXPECT_GT(exercise(f), 0u);
}

TEST(GGUFBadInput, UnknownTensorType) {
  expect_parse_error(one_tensor(99), "tensor 'w' has unknown type 99");
  expect_parse_error(one_tensor(0xFFFFFFFFu), "unknown type 4294967295");
  // ggml's IQ types (16..23) are real but lmkit has no layout for them: the same clear error.
  expect_parse_error(one_tensor(16, {256}, 0, 256), "unknown type 16");
  // Known to the parser, not loadable: the error comes when the tensor is asked for.
  const std::string bytes = one_tensor(11 /* q3_K */, {256}, 0, 110);
  GGUFFile f = parse(bytes);
  expect_error([&] { f.tensor(f.tensors()[0]); }, "q3_K, which lmkit cannot load");
}

TEST(GGUFBadInput, MisalignedOffsets) {
  expect_parse_error(one_tensor(0, {8}, 4, 64), "data offset 4 is not aligned to 32");
  expect_parse_error(one_tensor(0, {8}, 31, 64), "not aligned to 32");
  // With general.alignment 64, an offset of 32 is misaligned too.
  Raw r;
  r.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, 0, 32).pad(64).data(128);
  expect_parse_error(r.s, "data offset 32 is not aligned to 64");
  // The alignment itself must be a power of two (and not zero, and not absurd).
  for (uint32_t a : {0u, 3u, 48u, 1u << 21}) {
    Raw b;
    b.header(0, 1).kv_u32("general.alignment", a);
    expect_parse_error(b.s, "general.alignment must be a power of two");
  }
  Raw s;
  s.header(0, 1).str("general.alignment").put(uint32_t(GGUFType::STRING)).str("32");
  expect_parse_error(s.s, "general.alignment must be a power of two");
}

TEST(GGUFBadInput, TruncatedTensorData) {
  expect_parse_error(one_tensor(0, {8}, 0, 31), "tensor 'w' data lies past the end of the file");
  expect_parse_error(one_tensor(0, {8}, 0, 0), "past the end");
  expect_parse_error(one_tensor(0, {8}, 32, 32), "past the end");  // offset points past the data
  // Offsets near 2^64: offset + size must not wrap around to "inside the file".
  expect_parse_error(one_tensor(0, {8}, ~uint64_t(31), 32), "past the end");
  expect_parse_error(one_tensor(0, {8}, uint64_t(1) << 63, 32), "past the end");
  // A file cut inside the tensor directory or the header.
  const std::string good = one_tensor();
  for (size_t n : {size_t(0), size_t(3), size_t(4), size_t(10), size_t(30), size_t(50)})
    expect_parse_error(good.substr(0, n), "truncated");
  expect_parse_error(good.substr(0, 30), "header claims 1 tensors, more than the 6 bytes left");
  expect_parse_error(good.substr(0, 56), "truncated GGUF file (reading tensor offset at byte 49");
}

TEST(GGUFBadInput, AbsurdDimensionCounts) {
  expect_parse_error(one_tensor(0, {}), "tensor 'w' has 0 dimensions (lmkit supports 1 to 4)");
  expect_parse_error(one_tensor(0, {8, 1, 1, 1, 1}), "has 5 dimensions");
  Raw r;  // n_dims = 2^32 - 1 with no dims following: rejected before reading any
  r.header(1, 0).str("w").put(uint32_t(0xFFFFFFFFu)).data(64);
  expect_parse_error(r.s, "has 4294967295 dimensions");
}

TEST(GGUFBadInput, AbsurdAndOverflowingDimensions) {
  expect_parse_error(one_tensor(0, {0}), "absurd dimension 0");
  expect_parse_error(one_tensor(0, {8, 0}), "absurd dimension 0");
  expect_parse_error(one_tensor(0, {uint64_t(1) << 41}), "absurd dimension 2199023255552");
  expect_parse_error(one_tensor(0, {~uint64_t(0)}), "absurd dimension 18446744073709551615");
  // Each dimension plausible, the product not: 2^32 * 2^32 wraps a uint64_t to 0, 2^20 four times
  // is 2^80. Both must be caught before any size is computed from them.
  expect_parse_error(one_tensor(0, {uint64_t(1) << 32, uint64_t(1) << 32}), "absurdly large");
  expect_parse_error(one_tensor(0, {1u << 20, 1u << 20, 1u << 20, 1u << 20}), "absurdly large");
  expect_parse_error(one_tensor(0, {uint64_t(1) << 40, 1u << 9}), "absurdly large");
  // Large but representable: parses, then fails honestly on the missing data.
  expect_parse_error(one_tensor(0, {1u << 20, 1u << 20}), "past the end");
  // Block types: the row must be whole blocks.
  expect_parse_error(one_tensor(8 /* q8_0 */, {20}, 0, 64), "is not a multiple of the q8_0 block");
}

TEST(GGUFBadInput, HugeStringLengths) {
  Raw key;  // a metadata key claiming 2^60 bytes
  key.header(0, 1).put(uint64_t(1) << 60);
  expect_parse_error(key.s, "string of absurd length 1152921504606846976 in metadata key");
  Raw val;  // a string value one byte longer than the file
  val.header(0, 1).str("k").put(uint32_t(GGUFType::STRING)).put(uint64_t(100)).data(99);
  expect_parse_error(val.s, "truncated GGUF file (reading k");
  Raw name;  // a tensor name claiming 2^64 - 1 bytes
  name.header(1, 0).put(~uint64_t(0)).data(64);
  expect_parse_error(name.s, "absurd length 18446744073709551615 in tensor name");
}

TEST(GGUFBadInput, HugeArrayLengths) {
  auto array = [](GGUFType elem, uint64_t n, size_t payload) {
    Raw r;
    r.header(0, 1).str("a").put(uint32_t(GGUFType::ARRAY)).put(uint32_t(elem)).put(n).data(payload);
    return r.s;
  };
  // Past the cap, whatever the file holds.
  expect_parse_error(array(GGUFType::U8, ~uint64_t(0), 64),
                     "array 'a' claims 18446744073709551615");
  expect_parse_error(array(GGUFType::STRING, uint64_t(1) << 40, 64), "lmkit reads at most");
  // Under the cap but more than the file holds: refused before anything is allocated.
  expect_parse_error(array(GGUFType::F64, 1000, 64),
                     "claims 1000 elements, more than the file holds");
  expect_parse_error(array(GGUFType::STRING, 1000, 64), "claims 1000 strings, more than the file");
  // Element types that cannot be array elements.
  expect_parse_error(array(GGUFType::ARRAY, 1, 64), "unsupported element type 9");
  expect_parse_error(array(GGUFType(200), 1, 64), "unsupported element type 200");
}

TEST(GGUFBadInput, HugeCounts) {
  Raw t;
  t.header(uint64_t(1) << 40, 0);
  expect_parse_error(t.s, "absurd tensor count 1099511627776");
  Raw kv;
  kv.header(0, ~uint64_t(0));
  expect_parse_error(kv.s, "absurd metadata count");
  // A million tensors claimed by a 64-byte file: refused before reserving a directory for them.
  Raw small;
  small.header(1u << 20, 0).data(40);
  expect_parse_error(small.s, "header claims 1048576 tensors, more than the 40 bytes left");
}

TEST(GGUFBadInput, DuplicatesAndUnknownKinds) {
  Raw k;
  k.header(0, 2).kv_u32("x", 1).kv_u32("x", 2);
  expect_parse_error(k.s, "metadata key 'x' appears twice");
  Raw t;
  t.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().data(64);
  expect_parse_error(t.s, "tensor 'w' appears twice");
  Raw ty;
  ty.header(0, 1).str("k").put(uint32_t(13)).put(uint32_t(0));
  expect_parse_error(ty.s, "metadata 'k' has unknown type 13");
  Raw v1;
  v1.header(0, 0, 1);
  expect_parse_error(v1.s, "GGUF version 1 is not supported");
  Raw be;  // a big-endian writer's version 3
  be.header(0, 0, 0x03000000u);
  expect_parse_error(be.s, "GGUF version 50331648 is not supported");
  expect_parse_error("GGUX" + one_tensor().substr(4), "not a GGUF file (bad magic)");
}

}  // namespace
}  // namespace lmkit
