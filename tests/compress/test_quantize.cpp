// Quantized models end to end: for every --type, a model quantized in memory, written as GGUF
// and loaded back gives the same logits bit for bit; quantized logits stay within a per-type
// bound of the f32 ones; the type policy picks what it documents; quantized weights refuse
// gradients; Q8_0 keeps stories260K's greedy text.
#include <filesystem>

#include "compress/gguf_export.h"
#include "compress/quantize.h"
#include "compress/source.h"
#include "compress/test_compress_util.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "train/trainer.h"

namespace lmkit {
namespace {

using namespace compress;
using test::TempDir;

// Bounds on the error of quantized logits, in two parts.
// 1. The weights: the relative RMS error of a b-bit absmax (or min/max) block quantizer on
//    roughly Gaussian rows is (range / 2^b) / sqrt(12) / sigma, about 0.5% for 8 bits and
//    doubling with each bit less (measured here: q8_0 0.54%, q6_K 1.8%, q5_K 3.4%, q5_1 3.6%,
//    q5_0 4.0%, q4_K 6.7%, q4_1 7.3%, q4_0 8.1%; f16 0.021%, bf16 0.17%). weight_bound() allows
//    about 25% more, so a broken quantizer or a fallback to a coarser type fails.
// 2. The logits: rel RMS error <= 4 x the weights' error (these random models amplify weight
//    noise 2.3-3.3x; f16 and bf16, which have no other error, show the same ratio, so it is the
//    model's sensitivity and not the format's) + 3% for the quantized kernels' 8-bit activations
//    (measured 1.0-2.1% against the same model with dequantized f32 weights; 0 for float types,
//    which the kernels read exactly).
double weight_bound(DType t) {
  switch (t) {
    case DType::Q8_0:
      return 0.007;
    case DType::Q6_K:
      return 0.025;
    case DType::Q5_K:
    case DType::Q5_1:
    case DType::Q5_0:
      return 0.05;
    case DType::Q4_K:
    case DType::Q4_1:
    case DType::Q4_0:
      return 0.1;
    case DType::F16:
      return 3e-4;
    case DType::BF16:
      return 2.5e-3;
    default:
      return 0;
  }
}

// Relative RMS error of q's matrices against src's.
double weight_error(const ModelTensors &q, const ModelTensors &src) {
  double num = 0, den = 0;
  for (const auto &[name, w] : q.tensors) {
    if (w.ndim() != 2) continue;
    const Tensor a = kernels::dequantize(w), b = kernels::dequantize(*src.find(name));
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double d = double(a.f32()[i]) - double(b.f32()[i]);
      num += d * d;
      den += double(b.f32()[i]) * double(b.f32()[i]);
    }
  }
  return std::sqrt(num / den);
}

// Checks both bounds for q (quantized from src, f32) on `toks`; lq: q's logits, ref: src's.
void check_error(DType t, const ModelTensors &q, const ModelTensors &src,
                 const std::vector<int32_t> &toks, const std::vector<float> &lq,
                 const std::vector<float> &ref) {
  const double ew = weight_error(q, src);
  EXPECT_LE(ew, weight_bound(t));
  const std::vector<float> deq =
      test::logits_all(*model_from_tensors(convert_model(q, DType::F32)), toks);
  const double kernel = test::rel_rms(lq, deq), total = test::rel_rms(lq, ref);
  EXPECT_LE(kernel, dtype_is_quantized(t) ? 0.03 : 1e-6);
  EXPECT_LE(total, 4 * ew + (dtype_is_quantized(t) ? 0.03 : 1e-6));
  std::printf("[ info     ] %-5s weights %.5f, logits %.5f (kernels' activation rounding %.5f)\n",
              std::string(dtype_name(t)).c_str(), ew, total, kernel);
}

std::vector<int32_t> some_tokens(int64_t vocab, size_t n, uint64_t seed) {
  std::vector<float> r = test::random_floats(n, seed, 1.0f);
  std::vector<int32_t> t;
  for (float x : r) t.push_back(int32_t((x + 1.0f) * 0.5f * float(vocab - 1)));
  return t;
}

TEST(TypePolicy, FollowsTheDocumentedRules) {
  std::string note;
  // Vectors and learned positions stay f32.
  EXPECT_EQ(choose_type("blk.0.attn_norm.weight", {256}, DType::Q4_K, false, false), DType::F32);
  EXPECT_EQ(choose_type("position_embd.weight", {128, 256}, DType::Q8_0, false, false), DType::F32);
  // A matrix whose rows fit gets the type itself, with no note.
  EXPECT_EQ(choose_type("blk.0.attn_q.weight", {256, 512}, DType::Q4_K, false, false, &note),
            DType::Q4_K);
  EXPECT_EQ(note, "");
  // K-quant fallbacks (llama.cpp's), then f16.
  EXPECT_EQ(choose_type("w", {8, 64}, DType::Q4_K, false, false, &note), DType::Q5_0);
  EXPECT_NE(note.find("not a multiple of 256"), std::string::npos) << note;
  EXPECT_EQ(choose_type("w", {8, 64}, DType::Q5_K, false, false), DType::Q5_1);
  EXPECT_EQ(choose_type("w", {8, 64}, DType::Q6_K, false, false), DType::Q8_0);
  EXPECT_EQ(choose_type("w", {8, 172}, DType::Q4_K, false, false, &note), DType::F16);
  EXPECT_NE(note.find("nor 32 (q5_0)"), std::string::npos) << note;
  EXPECT_EQ(choose_type("w", {8, 48}, DType::Q8_0, false, false), DType::F16);
  // The classifier: q6_K, or q8_0 for q8_0 and for rows that are not a multiple of 256.
  EXPECT_EQ(choose_type("output.weight", {512, 256}, DType::Q4_0, true, false), DType::Q6_K);
  EXPECT_EQ(choose_type("output.weight", {512, 256}, DType::Q8_0, true, false), DType::Q8_0);
  EXPECT_EQ(choose_type("output.weight", {512, 64}, DType::Q4_K, true, false), DType::Q8_0);
  EXPECT_EQ(choose_type("output.weight", {512, 256}, DType::Q4_0, true, /*pure=*/true),
            DType::Q4_0);
  // Float targets: matrices get the type, vectors stay f32.
  EXPECT_EQ(choose_type("output.weight", {512, 100}, DType::F16, true, false), DType::F16);
  EXPECT_EQ(choose_type("output_norm.weight", {100}, DType::BF16, false, false), DType::F32);
  EXPECT_THROW(choose_type("w", {8, 64}, DType::Q8_K, false, false), Error);
}

// The random K-quant model, tied and untied, in every type.
TEST(QuantizedModel, EveryTypeReloadsBitExactAndStaysNearF32) {
  TempDir dir("quant");
  ThreadPool pool(2);
  for (bool tied : {true, false}) {
    auto f32 = test::kquant_model(tied, tied ? 7 : 8);
    const std::vector<int32_t> toks = some_tokens(f32->config().n_vocab, 24, 3);
    const std::vector<float> ref = test::logits_all(*f32, toks);
    const ModelTensors g = to_gguf_layout(model_tensors(*f32));
    // The GGUF layout alone changes nothing but float rounding.
    EXPECT_LT(test::rel_max(test::logits_all(*model_from_tensors(g), toks), ref), 1e-5);
    for (DType t : test::all_types()) {
      SCOPED_TRACE(str_cat(dtype_name(t), tied ? " tied" : " untied"));
      QuantizeOptions opt;
      opt.type = t;
      std::vector<TypeChoice> report;
      const ModelTensors q = quantize_model(g, opt, pool, &report);
      // What the policy promises, tensor by tensor.
      const DType cls = !dtype_is_quantized(t) ? t : t == DType::Q8_0 ? DType::Q8_0 : DType::Q6_K;
      EXPECT_EQ(q.find(tied ? "token_embd.weight" : "output.weight")->dtype(), cls);
      if (!tied) {
        EXPECT_EQ(q.find("token_embd.weight")->dtype(), t);
      }
      EXPECT_EQ(q.find("blk.1.attn_q.weight")->dtype(), t);
      EXPECT_EQ(q.find("blk.0.ffn_down.weight")->dtype(), t);
      EXPECT_EQ(q.find("blk.0.attn_norm.weight")->dtype(), DType::F32);
      EXPECT_EQ(q.find("output_norm.weight")->dtype(), DType::F32);
      for (const TypeChoice &c : report) {
        if (c.name != "output.weight" && c.name != "token_embd.weight") {
          EXPECT_EQ(c.note, "") << c.name;
        }
      }

      const auto mem = model_from_tensors(q);
      const std::vector<float> lq = test::logits_all(*mem, toks);
      const std::string path = dir / str_cat(dtype_name(t), tied, ".gguf");
      gguf_write(q, nullptr, path, {"kq", t, {}});
      const LoadedModel back = load_model(path);
      EXPECT_TRUE(test::same_bits(test::logits_all(*back.model, toks), lq));
      // q4_0 rows of 256 values run as the kernels' packed layout, in memory and from the file.
      if (t == DType::Q4_0) {
        for (const auto &[name, w] : back.model->weights().table) {
          if (name == "blk.0.attn_q.weight") {
            EXPECT_EQ(w.dtype(), DType::Q4_0X8);
          }
        }
      }
      check_error(t, q, g, toks, lq, ref);
      // Greedy choices mostly agree with f32 (a bad kernel or permutation would scramble them).
      const int64_t V = f32->config().n_vocab;
      int agree = 0;
      for (size_t i = 0; i < toks.size(); ++i) {
        auto arg = [&](const std::vector<float> &l) {
          return std::max_element(l.begin() + int64_t(i) * V, l.begin() + int64_t(i + 1) * V) -
                 l.begin();
        };
        agree += arg(lq) == arg(ref);
      }
      EXPECT_GE(agree,
                int(toks.size()) * (t == DType::Q8_0 || !dtype_is_quantized(t) ? 22 : 14) / 24);
    }
  }
}

// Every family of the PyTorch reference models (many rows are not whole K-quant blocks there:
// the fallbacks run), every type: in-memory and reloaded logits agree bit for bit.
TEST(QuantizedModel, ReferenceFamiliesEveryTypeReloadBitExact) {
  TempDir dir("quant-ref");
  ThreadPool pool(2);
  for (const std::string &name : test::ref_models()) {
    const LoadedModel hf = load_model(test::ref_dir() + "/" + name);
    const std::vector<int32_t> toks = test::ref_prompt(name);
    const std::vector<float> ref = test::logits_all(*hf.model, toks);
    const ModelTensors g = to_gguf_layout(model_tensors(*hf.model));
    for (DType t : test::all_types()) {
      SCOPED_TRACE(str_cat(name, " ", dtype_name(t)));
      QuantizeOptions opt;
      opt.type = t;
      const ModelTensors q = quantize_model(g, opt, pool);
      const std::vector<float> lq = test::logits_all(*model_from_tensors(q), toks);
      const std::string path = dir / str_cat(name, "-", dtype_name(t), ".gguf");
      gguf_write(q, nullptr, path, {name, t, {}});
      EXPECT_TRUE(test::same_bits(test::logits_all(*load_model(path).model, toks), lq));
      // Fallbacks (f16, q5_0, q8_0) only make matrices more precise than the type asked for.
      check_error(t, q, g, toks, lq, ref);
    }
  }
}

TEST(QuantizedModel, RequantizingAQuantizedFileAndKeepingItsBytes) {
  TempDir dir("requant");
  ThreadPool pool(2);
  auto f32 = test::kquant_model(false, 11);
  QuantizeOptions opt;
  opt.type = DType::Q4_K;
  const ModelTensors q4 = quantize_model(to_gguf_layout(model_tensors(*f32)), opt, pool);
  gguf_write(q4, nullptr, dir / "q4.gguf", {"q4", DType::Q4_K, {}});
  const LoadedModel back = load_model(dir / "q4.gguf");
  const ModelTensors again = model_tensors(*back.model);
  // Same type again: every tensor's bytes as they were.
  std::vector<TypeChoice> report;
  const ModelTensors same = quantize_model(again, opt, pool, &report);
  for (size_t i = 0; i < same.tensors.size(); ++i) {
    const Tensor &a = same.tensors[i].second, &b = *q4.find(same.tensors[i].first);
    ASSERT_EQ(a.dtype(), b.dtype()) << same.tensors[i].first;
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << same.tensors[i].first;
    EXPECT_EQ(report[i].note.find("requantized"), std::string::npos) << report[i].note;
  }
  // Another type: dequantized and quantized again, and said so.
  opt.type = DType::Q8_0;
  report.clear();
  const ModelTensors q8 = quantize_model(again, opt, pool, &report);
  EXPECT_EQ(q8.find("blk.0.attn_q.weight")->dtype(), DType::Q8_0);
  bool said = false;
  for (const TypeChoice &c : report)
    said = said || c.note.find("requantized from q4_K") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(QuantizedModel, TrainingRefusesQuantizedWeightsAndFineTuningDequantizes) {
  ThreadPool pool(2);
  auto f32 = test::kquant_model(true, 5);
  QuantizeOptions opt;
  opt.type = DType::Q8_0;
  const auto q = model_from_tensors(quantize_model(to_gguf_layout(model_tensors(*f32)), opt, pool));
  // Gradients need f32 parameters: a clear error, not wrong numbers.
  ag::GradStore grads;
  try {
    trainable_params(*q, grads);
    FAIL() << "trainable_params accepted q8_0 weights";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("f32"), std::string::npos) << e.what();
  }
  // A quantized embedding table is looked up (not trained) while recording.
  Arena arena;
  ag::Context ctx(pool, arena, /*recording=*/true, &grads);
  const std::vector<int32_t> toks = {1, 2, 3, 4};
  ag::Var x = ag::embedding(ctx, q->weights().tok_embd, toks.data(), 4);
  const Tensor row = kernels::dequantize(*model_tensors(*q).find("token_embd.weight"));
  EXPECT_EQ(std::memcmp(x.data, row.f32() + 256, 4 * 256 * 4), 0);
  // Fine-tuning starts from the dequantized values.
  const Weights w = weights_to_f32(q->weights());
  const ModelTensors qt = model_tensors(*q);
  const Tensor &wq = *qt.find("blk.0.attn_q.weight");
  const Tensor deq = kernels::dequantize(wq);
  EXPECT_EQ(w.layers[0].wq.w.dtype(), DType::F32);
  EXPECT_EQ(std::memcmp(w.layers[0].wq.w.data(), deq.data(), deq.nbytes()), 0);
}

// A real model: Q8_0 keeps stories260K's greedy continuation (llama2.c's own output).
TEST(QuantizedModel, Stories260KQ8GreedyEqualsF32) {
  LMKIT_REQUIRE_SHARED();
  const std::string bin = test::shared_dir() + "/models/stories260K/stories260K.bin";
  TempDir dir("stories");
  ModelSource src = open_source(bin);
  ASSERT_TRUE(src.vocab.has_value());
  ThreadPool pool(2);
  QuantizeOptions opt;
  opt.type = DType::Q8_0;
  const ModelTensors q = quantize_model(to_gguf_layout(model_tensors(*src.lm.model)), opt, pool);
  gguf_write(q, &*src.vocab, dir / "s.gguf", {"stories260K", DType::Q8_0, {}});
  const LoadedModel back = load_model(dir / "s.gguf");
  ASSERT_NE(back.tokenizer, nullptr);
  auto greedy = [&](const LoadedModel &lm) {
    auto p = std::make_shared<ThreadPool>(2);
    Session s(lm.model, p, 256);
    GenerateOptions go;
    go.max_tokens = 100;
    go.sampling.temperature = 0;
    go.ignore_eos = true;
    return generate(s, *lm.tokenizer, lm.tokenizer->encode("Once upon a time"), go).tokens;
  };
  const std::vector<int32_t> want = greedy(src.lm), got = greedy(back);
  EXPECT_EQ(got, want);
  EXPECT_EQ(want.size(), 100u);
  // The vocabulary came along: same ids for text, with the llama2.c tokenizer's BOS.
  for (const char *text :
       {"Once upon a time, Lily saw a big dog.", "Tom said: \"Hi!\"\n\nThe end."})
    EXPECT_EQ(back.tokenizer->encode(text), src.lm.tokenizer->encode(text)) << text;
}

}  // namespace
}  // namespace lmkit
