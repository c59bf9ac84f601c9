// libFuzzer target for the GGUF reader (io/gguf.h): any bytes give a GGUFFile or an lmkit::Error,
// never a crash, a sanitizer report or an allocation out of proportion to the input. Not a test of
// values: tests/io checks those.
//
//   fuzz_gguf CORPUS_DIR [SEED_DIR] -runs=1000000   fuzz (scripts/fuzz.sh builds and runs this)
//   fuzz_gguf --make-corpus DIR                     write the seed corpus (small valid GGUF files)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/gguf.h"

namespace {

using namespace lmkit;

[[noreturn]] void invariant_broken(const char *what) {
  std::fprintf(stderr, "fuzz_gguf: invariant broken: %s\n", what);
  std::abort();
}

// Every getter on every key: each must return or throw lmkit::Error, whatever the value's type.
uint64_t exercise_metadata(const GGUFFile &f) {
  uint64_t sink = f.version() + f.alignment();
  auto guarded = [&](auto &&fn) {
    try {
      fn();
    } catch (const Error &) {
    }
  };
  for (const auto &kv : f.metadata()) {
    const std::string &key = kv.first;  // (not a structured binding: clang 14 cannot capture those)
    const GGUFValue &v = kv.second;
    if (f.find(key) != &v) invariant_broken("find() does not return the listed value");
    sink += v.s.size() + v.strs.size() + v.nums.size() + uint64_t(v.i);
    guarded([&] { sink += f.get_str(key).size(); });
    guarded([&] { sink += uint64_t(f.get_int(key)); });
    guarded([&] { sink += uint64_t(f.get_float(key) != 0); });
    guarded([&] { sink += f.get_bool(key, false); });
    guarded([&] { sink += f.get_str_array(key).size(); });
    guarded([&] { sink += f.get_f32_array(key).size(); });
    guarded([&] { sink += f.get_i32_array(key).size(); });
  }
  return sink;
}

// Every tensor's bytes, read one by one: ASan sees any view that strays outside the input.
uint64_t exercise_tensors(const GGUFFile &f, const uint8_t *data, size_t size) {
  uint64_t sink = 0;
  for (const GGUFTensorInfo &ti : f.tensors()) {
    if (f.find_tensor(ti.name) == nullptr) invariant_broken("a listed tensor is not found by name");
    sink += ggml_type_name(ti.ggml_type).size() + uint64_t(ti.shape.numel());
    try {
      Tensor t = f.tensor(ti);
      const auto *p = static_cast<const uint8_t *>(t.data());
      if (t.nbytes() != ti.nbytes) invariant_broken("Tensor::nbytes() != GGUFTensorInfo::nbytes");
      if (p < data || t.nbytes() > size || size_t(p - data) > size - t.nbytes())
        invariant_broken("a tensor view lies outside the input");
      for (size_t k = 0; k < t.nbytes(); ++k) sink += p[k];
    } catch (const Error &) {
    }
  }
  return sink;
}

// ---- seed corpus ------------------------------------------------------------------------------

// A tensor of `dt` and `shape` filled with a byte pattern (the values do not matter to the parser).
Tensor patterned(DType dt, const Shape &shape, uint8_t seed) {
  Tensor t = Tensor::zeros(dt, shape);
  auto *p = static_cast<uint8_t *>(t.data());
  for (size_t k = 0; k < t.nbytes(); ++k) p[k] = uint8_t(seed + k * 37);
  return t;
}

GGUFValue scalar(GGUFType type, int64_t i, double f = 0) {
  GGUFValue v;
  v.type = type;
  v.i = i;
  v.f = f;
  return v;
}

// Bytes of a GGUF file built field by field, for tensor types the writer does not take.
struct RawGGUF {
  std::string s = "GGUF";
  template <typename T>
  void put(T v) {
    s.append(reinterpret_cast<const char *>(&v), sizeof v);
  }
  void str(const std::string &x) {
    put(uint64_t(x.size()));
    s += x;
  }
};

void write_bytes(const std::string &path, const std::string &bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void make_corpus(const std::string &dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  auto at = [&](const std::string &name) { return (fs::path(dir) / name).string(); };

  {  // every metadata value type, and one small f32 matrix
    GGUFWriter w;
    w.set_str("general.architecture", "llama");
    w.set_str("general.name", "seed");
    w.set("u8", scalar(GGUFType::U8, 200));
    w.set("i8", scalar(GGUFType::I8, -100));
    w.set("u16", scalar(GGUFType::U16, 60000));
    w.set("i16", scalar(GGUFType::I16, -30000));
    w.set_u32("llama.block_count", 2);
    w.set_i32("i32", -7);
    w.set("u64", scalar(GGUFType::U64, int64_t(1) << 40));
    w.set("i64", scalar(GGUFType::I64, -(int64_t(1) << 40)));
    w.set_f32("llama.rope.freq_base", 10000.0f);
    w.set("f64", scalar(GGUFType::F64, 0, 2.5));
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_str_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a",
                                              "\xe2\x96\x81"
                                              "b"});
    w.set_f32_array("tokenizer.ggml.scores", {0.f, 0.f, 0.f, -1.f, -2.f});
    w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 1, 1});
    GGUFValue u8s;
    u8s.type = GGUFType::ARRAY;
    u8s.elem = GGUFType::U8;
    u8s.nums = {1, 2, 3};
    w.set("u8_array", u8s);
    Tensor a = patterned(DType::F32, {3, 8}, 1);
    w.add_tensor("token_embd.weight", a);
    w.write(at("metadata_all_types.gguf"));
    // The same file as GGUF version 2 (same layout, 64-bit counts).
    std::string v2 = read_bytes(at("metadata_all_types.gguf"));
    v2[4] = 2;
    write_bytes(at("metadata_all_types_v2.gguf"), v2);
  }
  {  // half types, 3-D and 4-D shapes, a non-default alignment
    GGUFWriter w;
    Tensor a = patterned(DType::F16, {4, 8}, 2), b = patterned(DType::BF16, {16}, 3);
    Tensor c = patterned(DType::F32, {2, 2, 8}, 4), d = patterned(DType::F32, {1, 2, 2, 4}, 5);
    w.add_tensor("f16", a);
    w.add_tensor("bf16", b);
    w.add_tensor("f32_3d", c);
    w.add_tensor("f32_4d", d);
    w.write(at("half_types_align64.gguf"), 64);
  }
  {  // every block type the writer knows
    GGUFWriter w;
    std::vector<Tensor> keep;
    const std::pair<DType, int64_t> types[] = {
        {DType::Q4_0, 32},  {DType::Q4_1, 32}, {DType::Q5_0, 32},  {DType::Q5_1, 32},
        {DType::Q8_0, 64},  {DType::Q8_1, 32}, {DType::Q4_K, 256}, {DType::Q5_K, 256},
        {DType::Q6_K, 256}, {DType::Q8_K, 256}};
    uint8_t seed = 10;
    for (const auto &[dt, n] : types) {
      keep.push_back(patterned(dt, {2, n}, seed++));
      w.add_tensor(std::string(dtype_name(dt)), keep.back());
    }
    w.write(at("block_types.gguf"));
  }
  {  // no tensors, no metadata
    GGUFWriter w;
    w.write(at("empty.gguf"));
  }
  {  // tensor types lmkit parses but cannot load (q2_K, q3_K, i8, i32, f64), built by hand
    RawGGUF r;
    struct {
      uint32_t type;
      uint64_t n;
      size_t bytes;
    } const types[] = {{10, 256, 84}, {11, 256, 110}, {24, 4, 4}, {26, 4, 16}, {28, 4, 32}};
    r.put(uint32_t(3));
    r.put(uint64_t(std::size(types)));
    r.put(uint64_t(1));
    r.str("general.alignment");
    r.put(uint32_t(GGUFType::U32));
    r.put(uint32_t(16));
    uint64_t off = 0;
    for (const auto &t : types) {
      r.str("t" + std::to_string(t.type));
      r.put(uint32_t(1));
      r.put(t.n);
      r.put(t.type);
      r.put(off);
      off += (t.bytes + 15) / 16 * 16;
    }
    r.s.append((16 - r.s.size() % 16) % 16, '\0');
    for (const auto &t : types) r.s.append((t.bytes + 15) / 16 * 16, '\x5a');
    write_bytes(at("unloadable_types.gguf"), r.s);
  }
  std::printf("fuzz_gguf: seed corpus written to %s\n", dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv) {
  for (int k = 1; k + 1 < *argc; ++k)
    if (std::strcmp((*argv)[k], "--make-corpus") == 0) {
      try {
        make_corpus((*argv)[k + 1]);
      } catch (const std::exception &e) {
        std::fprintf(stderr, "fuzz_gguf: %s\n", e.what());
        std::exit(1);
      }
      std::exit(0);
    }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  try {
    GGUFFile f = GGUFFile::parse(data, size, "fuzz.gguf");
    volatile uint64_t sink = exercise_metadata(f) + exercise_tensors(f, data, size);
    (void)sink;
  } catch (const Error &) {
  }
  return 0;
}
