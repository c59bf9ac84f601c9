// Parity with the independent PyTorch reference (tests/reference/make_models.py, float64):
// logits for every prompt position, greedy continuations and hook values, for every family and
// file format; plus the malformed-model fixtures.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/loader.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "test_util.h"

namespace lmkit {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string ref_dir() {
  return std::string(LMKIT_BUILD_DIR) + "/reference";
}

json read_json(const std::string &p) {
  std::ifstream f(p);
  EXPECT_TRUE(f.good()) << p;
  return json::parse(f);
}

const json &manifest() {
  static const json m = read_json(ref_dir() + "/manifest.json");
  return m;
}

// Every model the reference made, HF folders and GGUF files, with its expected.json.
struct Case {
  std::string name, path, expected;
};
std::vector<Case> cases() {
  std::vector<Case> out;
  for (const auto &m : manifest()["models"])
    out.push_back({m["name"], ref_dir() + "/" + m["dir"].get<std::string>(),
                   ref_dir() + "/" + m["expected"].get<std::string>()});
  for (const auto &g : manifest()["gguf"])
    out.push_back({g["file"], ref_dir() + "/" + g["file"].get<std::string>(),
                   ref_dir() + "/" + g["expected"].get<std::string>()});
  return out;
}

std::vector<int32_t> ids_of(const json &j) {
  return j.get<std::vector<int32_t>>();
}

// max |a - b| over all logits, and the largest |expected| (the logit scale).
std::pair<double, double> compare_logits(const float *got, const json &expected, int64_t V) {
  double diff = 0, scale = 0;
  for (size_t t = 0; t < expected.size(); ++t)
    for (int64_t v = 0; v < V; ++v) {
      double e = expected[t][size_t(v)].get<double>();
      diff = std::max(diff, std::abs(double(got[int64_t(t) * V + v]) - e));
      scale = std::max(scale, std::abs(e));
    }
  return {diff, scale};
}

TEST(ReferenceModels, ManifestCoversEveryFamilyAndFormat) {
  std::set<std::string> families, formats;
  for (const auto &m : manifest()["models"]) families.insert(m["family"].get<std::string>());
  for (const auto &g : manifest()["gguf"]) formats.insert(g["arch"].get<std::string>());
  EXPECT_EQ(families, (std::set<std::string>{"llama", "mistral", "qwen2", "gpt2"}));
  EXPECT_EQ(formats, (std::set<std::string>{"llama", "qwen2", "gpt2"}));
  EXPECT_GE(cases().size(), 12u);
}

// Restores the process's kernel table when a test that switches tables ends.
struct KernelScope {
  const kernels::KernelTable &saved = kernels::active();
  ~KernelScope() { kernels::set_active(saved); }
};

TEST(ReferenceModels, LogitsGreedyAndHooksMatchPyTorch) {
  KernelScope restore;
  for (const kernels::KernelTable *table : kernels::available())
    for (const Case &c : cases()) {
      kernels::set_active(*table);
      SCOPED_TRACE(std::string(c.name) + " kernels=" + table->name);
      json e = read_json(c.expected);
      LoadedModel lm = load_model(c.path);
      const int64_t V = lm.model->config().n_vocab;
      std::vector<int32_t> prompt = ids_of(e["prompt_ids"]);
      for (int threads : {1, 3}) {
        SCOPED_TRACE(threads);
        auto pool = std::make_shared<ThreadPool>(threads);
        // Logits of every prompt position, in one chunk and in chunks of 5 (chunked prefill).
        for (int64_t n_batch : {int64_t(256), int64_t(5)}) {
          Session s(lm.model, pool, 64, n_batch);
          const float *logits = s.eval_all(prompt);
          auto [diff, scale] = compare_logits(logits, e["logits"], V);
          EXPECT_LE(diff, 1e-4 * std::max(1.0, scale)) << "batch " << n_batch << " scale " << scale;
        }
        // Greedy continuation, token by token through the KV cache.
        Session s(lm.model, pool, 64);
        const float *lg = s.eval(prompt);
        std::vector<int32_t> got;
        for (size_t i = 0; i < e["greedy_ids"].size(); ++i) {
          int32_t t = argmax(lg, V);
          got.push_back(t);
          lg = s.eval(std::span<const int32_t>(&t, 1));
        }
        EXPECT_EQ(got, ids_of(e["greedy_ids"]));
      }
      // Hook values for the whole prompt.
      auto pool = std::make_shared<ThreadPool>(2);
      Session s(lm.model, pool, 64);
      std::map<std::string, std::vector<float>> seen;
      for (auto it = e["hooks"].begin(); it != e["hooks"].end(); ++it) {
        std::string name = it.key();
        s.hooks().add(name, [&seen, name](const HookEvent &ev) {
          Tensor v = ev.value.contiguous();
          seen[name].assign(v.f32(), v.f32() + v.numel());
        });
      }
      s.eval(prompt);
      for (auto it = e["hooks"].begin(); it != e["hooks"].end(); ++it) {
        SCOPED_TRACE(it.key());
        std::vector<double> want;
        std::function<void(const json &)> flat = [&](const json &j) {
          if (j.is_array())
            for (const auto &x : j) flat(x);
          else
            want.push_back(j.get<double>());
        };
        flat(it.value());
        const auto &got = seen[it.key()];
        ASSERT_EQ(got.size(), want.size());
        double diff = 0, scale = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          diff = std::max(diff, std::abs(double(got[i]) - want[i]));
          scale = std::max(scale, std::abs(want[i]));
        }
        EXPECT_LE(diff, 1e-4 * std::max(1.0, scale));
      }
    }
}

TEST(ReferenceModels, ConfigMapping) {
  LoadedModel q = load_model(ref_dir() + "/qwen2_bias");
  // use_sliding_window is false: the window in config.json must be ignored.
  EXPECT_TRUE(q.model->config().sliding_window.empty());
  EXPECT_TRUE(q.model->config().qkv_bias);
  LoadedModel m = load_model(ref_dir() + "/mistral_swa");
  EXPECT_EQ(m.model->config().window(1), 4);
  LoadedModel g = load_model(ref_dir() + "/llama_gqa_tied.gguf");
  EXPECT_EQ(g.model->config().rope_style, kernels::RopeStyle::Interleaved);
  EXPECT_TRUE(g.model->config().tied_embeddings);
  LoadedModel f16 = load_model(ref_dir() + "/llama_gqa_tied_f16");
  EXPECT_EQ(f16.model->weights().layers[0].wq.w.dtype(), DType::F16);
  LoadedModel gpt = load_model(ref_dir() + "/gpt2");
  EXPECT_TRUE(gpt.model->weights().layers[0].fused_qkv());
  EXPECT_EQ(gpt.model->config().mlp, MlpType::GELUTanh);
}

// Every malformed fixture gives an lmkit::Error (never a crash) naming the problem.
TEST(ReferenceModels, BadFixturesGiveClearErrors) {
  const std::map<std::string, std::string> needle = {
      {"truncated.safetensors", "truncated"},
      {"header_len_exceeds_file.safetensors", "exceeds the file size"},
      {"header_len_huge.safetensors", "exceeds the file size"},
      {"header_not_json.safetensors", "not valid JSON"},
      {"offsets_out_of_range.safetensors", "outside the file"},
      {"offsets_size_mismatch.safetensors", "needs 64"},
      {"unknown_dtype.safetensors", "unknown dtype"},
      {"wrong_shape/", "has shape [64, 32], the config expects [32, 64]"},
      {"missing_tensor/", "'model.norm.weight' is missing"},
      {"unknown_arch/", "model_type 'bloomz-unknown' is not supported"},
      {"missing_shard/", "model-00002-of-00002.safetensors"},
      {"truncated.gguf", "past the end of the file"},
      {"truncated_metadata.gguf", "truncated GGUF"},
      {"bad_magic.gguf", "not a"},
      {"unknown_tensor_type.gguf", "unknown type 99"},
      {"misaligned_offset.gguf", "not aligned"},
      {"too_many_dims.gguf", "dimensions"},
      {"huge_dim.gguf", "absurd"},
      {"huge_string.gguf", "absurd length"},
      {"huge_counts.gguf", "absurd tensor count"},
      {"truncated_llama2c.bin", "truncated llama2.c checkpoint"},
  };
  const json bad = read_json(ref_dir() + "/bad/manifest.json");
  ASSERT_EQ(bad["files"].size(), needle.size());
  for (const auto &f : bad["files"]) {
    std::string file = f["file"];
    SCOPED_TRACE(file);
    std::string path = ref_dir() + "/bad/" + file;
    if (path.back() == '/') path.pop_back();
    if (f["format"] == "safetensors") {
      // A lone .safetensors file is read through a model folder holding it.
      test::TempDir dir("bad-st");
      fs::copy_file(path, dir / "model.safetensors");
      fs::copy_file(ref_dir() + "/llama_gqa_tied/config.json", dir / "config.json");
      path = dir.str();
      try {
        load_model(path);
        ADD_FAILURE() << "no error";
      } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find(needle.at(file)), std::string::npos) << e.what();
      }
      continue;
    }
    try {
      load_model(path);
      ADD_FAILURE() << "no error";
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(needle.at(file)), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace lmkit
