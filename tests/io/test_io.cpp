// Tests for io/: GGUF and safetensors round trips through our writers, llama2.c parsing, and
// malformed files (each must give a clear lmkit::Error, never a crash).
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace lmkit {
namespace {

Tensor iota(DType t, const Shape &s) {
  Tensor f = Tensor::zeros(DType::F32, s);
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = float(i) * 0.5f - 3.0f;
  return f.to(t);
}

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string &p, const std::string &bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// Expects an Error whose message contains `needle`.
template <typename F>
void expect_error(F &&f, const std::string &needle) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << needle << "')";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GGUF, WriterReaderRoundTrip) {
  test::TempDir dir("gguf");
  GGUFWriter w;
  w.set_str("general.architecture", "llama");
  w.set_u32("llama.block_count", 3);
  w.set_f32("llama.rope.freq_base", 500000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_str_array("tokenizer.ggml.tokens", {"<s>", "a", "", "\xe2\x96\x81the"});
  w.set_f32_array("tokenizer.ggml.scores", {0.0f, -1.5f, 2.0f, 3.25f});
  w.set_i32_array("tokenizer.ggml.token_type", {3, 1, 1, 1});
  Tensor a = iota(DType::F32, {3, 5}), b = iota(DType::F16, {7}), c = iota(DType::BF16, {2, 2, 3});
  w.add_tensor("a", a);
  w.add_tensor("b", b);
  w.add_tensor("c", c);
  w.write(dir / "m.gguf");

  GGUFFile f = GGUFFile::open(dir / "m.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_str("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 3);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 500000.0);
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token", false));
  EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens")[3], "\xe2\x96\x81the");
  EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores")[3], 3.25f);
  EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type")[0], 3);
  EXPECT_EQ(f.get_int("missing", 42), 42);
  EXPECT_THROW(f.get_int("general.architecture"), Error);
  ASSERT_EQ(f.tensors().size(), 3u);
  for (const auto &[name, src] :
       std::vector<std::pair<std::string, Tensor>>{{"a", a}, {"b", b}, {"c", c}}) {
    const GGUFTensorInfo *ti = f.find_tensor(name);
    ASSERT_NE(ti, nullptr);
    Tensor t = f.tensor(*ti);
    EXPECT_EQ(t.shape(), src.shape()) << name;
    EXPECT_EQ(t.dtype(), src.dtype()) << name;
    EXPECT_EQ(std::memcmp(t.data(), src.data(), src.nbytes()), 0) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 32, 0u) << name;
  }
}

// A minimal GGUF with one tensor, built byte by byte so each field can be corrupted.
std::string tiny_gguf(uint32_t n_dims, uint64_t dim0, uint32_t type, uint64_t offset,
                      size_t data_bytes) {
  std::string s = "GGUF";
  auto put = [&](auto v) { s.append(reinterpret_cast<const char *>(&v), sizeof v); };
  put(uint32_t(3));
  put(uint64_t(1));  // tensors
  put(uint64_t(0));  // kv
  put(uint64_t(1));
  s += "w";
  put(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) put(uint64_t(d == 0 ? dim0 : 1));
  put(type);
  put(offset);
  s.append((32 - s.size() % 32) % 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

TEST(GGUF, MalformedFilesGiveClearErrors) {
  test::TempDir dir("badgguf");
  auto check = [&](const std::string &bytes, const std::string &needle) {
    spit(dir / "x.gguf", bytes);
    expect_error([&] { GGUFFile::open(dir / "x.gguf"); }, needle);
  };
  std::string good = tiny_gguf(1, 8, 0, 0, 32);
  spit(dir / "good.gguf", good);
  EXPECT_EQ(GGUFFile::open(dir / "good.gguf").tensors().size(), 1u);

  check("GGUX" + good.substr(4), "bad magic");
  check(good.substr(0, 20), "truncated");
  check(tiny_gguf(1, 8, 0, 0, 16), "past the end");      // tensor data cut short
  check(tiny_gguf(1, 8, 99, 0, 32), "unknown type 99");  // unknown tensor type
  check(tiny_gguf(1, 8, 0, 3, 64), "not aligned");       // misaligned data offset
  check(tiny_gguf(7, 8, 0, 0, 32), "7 dimensions");      // absurd dimension count
  check(tiny_gguf(1, uint64_t(1) << 62, 0, 0, 32), "absurd dimension");
  check(tiny_gguf(1, 20, 8, 0, 64), "block size");  // q8_0 row not a multiple of 32
  // A huge claimed string length.
  std::string s = good;
  uint64_t huge = uint64_t(1) << 60;
  std::memcpy(&s[24], &huge, 8);
  check(s, "absurd length");
  // Loading a tensor of a type lmkit cannot run yet names the type.
  spit(dir / "q.gguf", tiny_gguf(1, 32, 12 /* q4_K needs 256 */, 0, 0));
  expect_error([&] { GGUFFile::open(dir / "q.gguf"); }, "block size");
  spit(dir / "q2.gguf", tiny_gguf(1, 256, 10 /* q2_K */, 0, 96));
  GGUFFile q2 = GGUFFile::open(dir / "q2.gguf");
  expect_error([&] { q2.tensor(q2.tensors()[0]); }, "q2_K");
}

TEST(GGUF, RandomCorruptionNeverCrashes) {
  std::string good = tiny_gguf(2, 8, 1, 0, 64);
  uint64_t s = 12345;
  for (int it = 0; it < 3000; ++it) {
    std::string b = good;
    int flips = 1 + int(s % 4);
    for (int k = 0; k < flips; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      b[size_t(s >> 33) % b.size()] = char(s >> 20);
    }
    if (s % 5 == 0) b.resize(size_t(s >> 40) % b.size());
    try {
      GGUFFile f = GGUFFile::parse(reinterpret_cast<const uint8_t *>(b.data()), b.size(), "fuzz");
      for (const auto &t : f.tensors()) {
        try {
          f.tensor(t);
        } catch (const Error &) {
        }
      }
    } catch (const Error &) {
    }
  }
}

TEST(Safetensors, WriterReaderRoundTripAndMetadata) {
  test::TempDir dir("st");
  Tensor a = iota(DType::F32, {4, 3}), b = iota(DType::BF16, {5}), c = iota(DType::F16, {2, 3});
  safetensors_write(dir / "model.safetensors", {{"z.weight", a}, {"a.bias", b}, {"m", c}},
                    {{"format", "pt"}, {"note", "hi"}});
  SafetensorsFile f = SafetensorsFile::open(dir / "model.safetensors");
  EXPECT_EQ(f.metadata().at("note"), "hi");
  ASSERT_EQ(f.tensors().size(), 3u);
  Tensor t = f.tensor(*f.find("z.weight"));
  EXPECT_EQ(t.shape(), Shape({4, 3}));
  EXPECT_EQ(std::memcmp(t.data(), a.data(), a.nbytes()), 0);
  EXPECT_EQ(f.tensor(*f.find("a.bias")).dtype(), DType::BF16);

  SafetensorsSet set = SafetensorsSet::open_dir(dir.str());
  EXPECT_TRUE(set.has("m"));
  EXPECT_EQ(set.get("m").to(DType::F32).f32()[5], c.to(DType::F32).f32()[5]);
  expect_error([&] { set.get("nope"); }, "missing tensor 'nope'");
}

TEST(Safetensors, ShardedIndex) {
  test::TempDir dir("shard");
  safetensors_write(dir / "model-00001-of-00002.safetensors", {{"a", iota(DType::F32, {3})}});
  safetensors_write(dir / "model-00002-of-00002.safetensors", {{"b", iota(DType::F32, {2})}});
  write_file_atomic(dir / "model.safetensors.index.json",
                    R"({"metadata": {"total_size": 20}, "weight_map": {
                      "a": "model-00001-of-00002.safetensors",
                      "b": "model-00002-of-00002.safetensors"}})");
  SafetensorsSet set = SafetensorsSet::open_dir(dir.str());
  EXPECT_EQ(set.names().size(), 2u);
  EXPECT_EQ(set.get("b").f32()[1], -2.5f);
  write_file_atomic(dir / "model.safetensors.index.json",
                    R"({"weight_map": {"a": "../../etc/passwd"}})");
  expect_error([&] { SafetensorsSet::open_dir(dir.str()); }, "plain file name");
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  test::TempDir dir("badst");
  safetensors_write(dir / "ok.safetensors", {{"w", iota(DType::F32, {16})}});
  std::string good = slurp(dir / "ok.safetensors");
  auto check = [&](const std::string &bytes, const std::string &needle) {
    spit(dir / "x.safetensors", bytes);
    expect_error([&] { SafetensorsFile::open(dir / "x.safetensors"); }, needle);
  };
  check(good.substr(0, good.size() - 8), "outside the file");  // truncated data
  check(good.substr(0, 5), "too short");
  std::string big = good;
  uint64_t n = 1ull << 40;
  std::memcpy(&big[0], &n, 8);
  check(big, "exceeds the file size");
  std::string notjson = good;
  notjson[8] = '#';
  check(notjson, "not valid JSON");
  auto with_header = [](const std::string &h, size_t data) {
    std::string s(8, '\0');
    uint64_t n = h.size();
    std::memcpy(&s[0], &n, 8);
    return s + h + std::string(data, '\0');
  };
  check(with_header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16), "needs 16");
  check(with_header(R"({"w":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}})", 16),
        "unknown dtype");
  check(with_header(R"({"w":{"dtype":"F32","shape":[4]}})", 16), "lacks");
  check(with_header(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16),
        "non-integer");
  check(with_header(R"([1,2])", 0), "not a JSON object");
}

TEST(Llama2c, ParsesStories260K) {
  LMKIT_REQUIRE_SHARED();
  Llama2cFile f = Llama2cFile::open(test::shared_dir() + "/models/stories260K/stories260K.bin");
  const Llama2cHeader &h = f.header;
  EXPECT_EQ(h.version, 0);
  EXPECT_EQ(h.dim, 64);
  EXPECT_EQ(h.hidden_dim, 172);
  EXPECT_EQ(h.n_layers, 5);
  EXPECT_EQ(h.n_heads, 8);
  EXPECT_EQ(h.n_kv_heads, 4);
  EXPECT_EQ(h.vocab_size, 512);
  EXPECT_EQ(h.seq_len, 512);
  EXPECT_TRUE(h.shared_classifier);
  EXPECT_EQ(f.tensors.at("blk.4.attn_k.weight").shape(), Shape({32, 64}));
  EXPECT_EQ(f.tensors.count("output.weight"), 0u);
  // The final norm weight sits right after the layers, before the freq_cis arrays.
  const float *embd = f.tensors.at("token_embd.weight").f32();
  const float *norm = f.tensors.at("output_norm.weight").f32();
  size_t floats_before = size_t(norm - embd);
  EXPECT_EQ(floats_before,
            size_t(512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64)));
}

TEST(Llama2c, TruncatedAndImplausibleFiles) {
  test::TempDir dir("badl2c");
  int32_t hdr[7] = {64, 172, 5, 8, 4, 512, 512};
  std::string bytes(reinterpret_cast<const char *>(hdr), sizeof hdr);
  spit(dir / "t.bin", bytes + std::string(400, '\0'));
  expect_error([&] { Llama2cFile::open(dir / "t.bin"); }, "truncated llama2.c checkpoint");
  int32_t bad[7] = {64, 172, 5, 7, 4, 512, 512};  // 64 % 7 != 0
  spit(dir / "b.bin", std::string(reinterpret_cast<const char *>(bad), sizeof bad));
  expect_error([&] { Llama2cFile::open(dir / "b.bin"); }, "inconsistent");
  spit(dir / "g.bin", "hello world, not a model at all....");
  expect_error([&] { Llama2cFile::open(dir / "g.bin"); }, "not a llama2.c checkpoint");
  EXPECT_FALSE(llama2c_sniff(reinterpret_cast<const uint8_t *>("abc"), 3));
}

TEST(AtomicFile, ReplacesWholeFileOrNothing) {
  test::TempDir dir("atomic");
  write_file_atomic(dir / "f.txt", "first");
  {
    AtomicFile f(dir / "f.txt");
    f.write("second, unfinished");
    // no commit: destroyed without replacing
  }
  EXPECT_EQ(slurp(dir / "f.txt"), "first");
  for (auto &e : std::filesystem::directory_iterator(dir.str()))
    EXPECT_EQ(e.path().filename(), "f.txt");  // no temp file left behind
  write_file_atomic(dir / "f.txt", "third");
  EXPECT_EQ(slurp(dir / "f.txt"), "third");
}

}  // namespace
}  // namespace lmkit
