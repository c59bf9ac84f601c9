// Format conversion: Hugging Face -> GGUF (f32) runs as the HF folder does (logits within 1e-5
// relative), carries the metadata llama.cpp reads and a vocabulary that tokenizes as the
// original; GGUF -> Hugging Face folder round trips; vocabularies survive GGUF -> tokenizer.json
// (llama.cpp's conformance vectors); writing never leaves a half-made output.
#include <filesystem>
#include <fstream>

#include "compress/gguf_export.h"
#include "compress/hf_export.h"
#include "compress/source.h"
#include "compress/test_compress_util.h"
#include "io/gguf.h"
#include "tokenizer/test_tokenizer_util.h"

namespace lmkit {
namespace {

using namespace compress;
using test::TempDir;
namespace fs = std::filesystem;

// HF folder -> GGUF in the given float type, as `lmkit convert` does.
void to_gguf(const std::string &src_path, const std::string &out, DType t = DType::F32) {
  ModelSource src = open_source(src_path);
  Llama3Rope llama3;
  ModelTensors m = to_gguf_layout(model_tensors(*src.lm.model), &llama3);
  if (t != DType::F32) m = convert_model(m, t);
  gguf_write(m, src.vocab ? &*src.vocab : nullptr, out, {src.name, t, llama3});
}

// Any model -> Hugging Face folder in f32, as `lmkit convert` does.
void to_hf(const std::string &src_path, const std::string &out) {
  ModelSource src = open_source(src_path);
  ModelTensors m = to_hf_layout(model_tensors(*src.lm.model), &src.llama3);
  m = convert_model(m, DType::F32, true);
  hf_write(m, src.vocab ? &*src.vocab : nullptr, out);
}

void expect_tokenizes_like_reference(const Tokenizer &tok, const std::string &name) {
  const nlohmann::json e = test::ref_expected(name);
  for (const auto &c : e.at("tokenizer_checks"))
    EXPECT_EQ(tok.encode(c.at("text").get<std::string>(), false, true),
              c.at("ids").get<std::vector<int32_t>>())
        << name << ": " << c.at("text");
  EXPECT_EQ(tok.encode(e.at("prompt_text").get<std::string>()), test::ref_prompt(name)) << name;
}

TEST(Convert, HfToGgufF32RunsAsTheHfFolderAndCarriesLlamaCppMetadata) {
  TempDir dir("hf2gguf");
  for (const std::string &name : test::ref_models()) {
    SCOPED_TRACE(name);
    const std::string hf_path = test::ref_dir() + "/" + name;
    const std::string out = dir / (name + ".gguf");
    to_gguf(hf_path, out);
    const LoadedModel hf = load_model(hf_path), gg = load_model(out);
    const std::vector<int32_t> toks = test::ref_prompt(name);
    EXPECT_LT(test::rel_max(test::logits_all(*gg.model, toks), test::logits_all(*hf.model, toks)),
              1e-5);
    ASSERT_NE(gg.tokenizer, nullptr);
    expect_tokenizes_like_reference(*gg.tokenizer, name);

    const GGUFFile f = GGUFFile::open(out);
    const ModelConfig &c = hf.model->config();
    const std::string a = f.get_str("general.architecture");
    EXPECT_EQ(a, name == "gpt2" ? "gpt2" : name == "qwen2_bias" ? "qwen2" : "llama");
    EXPECT_EQ(f.get_int(a + ".context_length"), c.n_ctx_train);
    EXPECT_EQ(f.get_int(a + ".embedding_length"), c.n_embd);
    EXPECT_EQ(f.get_int(a + ".block_count"), c.n_layer);
    EXPECT_EQ(f.get_int(a + ".feed_forward_length"), c.n_ff);
    EXPECT_EQ(f.get_int(a + ".attention.head_count"), c.n_head);
    EXPECT_EQ(f.get_int(a + ".attention.head_count_kv"), c.n_head_kv);
    EXPECT_EQ(f.get_int("general.file_type"), 0);
    if (a == "gpt2") {
      EXPECT_FLOAT_EQ(float(f.get_float(a + ".attention.layer_norm_epsilon")), c.norm_eps);
      EXPECT_NE(f.find_tensor("blk.0.attn_qkv.weight"), nullptr);
      EXPECT_NE(f.find_tensor("position_embd.weight"), nullptr);
      EXPECT_NE(f.find_tensor("output.weight"), nullptr);  // llama.cpp's gpt2 requires it
    } else {
      EXPECT_FLOAT_EQ(float(f.get_float(a + ".attention.layer_norm_rms_epsilon")), c.norm_eps);
      EXPECT_FLOAT_EQ(float(f.get_float(a + ".rope.freq_base")), c.rope_theta);
      EXPECT_EQ(f.get_int(a + ".rope.dimension_count"), c.rope_dim);
      for (const char *t :
           {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
            "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
            "blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"})
        EXPECT_NE(f.find_tensor(t), nullptr) << t;
      EXPECT_EQ(f.find_tensor("output.weight") == nullptr, c.tied_embeddings);
    }
    EXPECT_NE(f.find_tensor("token_embd.weight"), nullptr);
    EXPECT_NE(f.find_tensor("output_norm.weight"), nullptr);
    for (const GGUFTensorInfo &t : f.tensors()) {
      if (t.shape.ndim == 1) {
        EXPECT_EQ(t.ggml_type, 0u) << t.name << " (1-D tensors stay f32)";
      }
    }
    EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(f.get_str("tokenizer.ggml.pre"), "gpt-2");
    EXPECT_EQ(int64_t(f.get_str_array("tokenizer.ggml.tokens").size()), c.n_vocab);
    EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type").size(), size_t(c.n_vocab));
    EXPECT_FALSE(f.get_str_array("tokenizer.ggml.merges").empty());
    EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id", -1), hf.tokenizer->bos_id());
    EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id", -1), hf.tokenizer->eos_id());
    EXPECT_TRUE(f.has("tokenizer.ggml.add_bos_token"));
  }
}

TEST(Convert, LlamaRowPermutationAndLlama3RopeMatchThePythonConverter) {
  // make_models.py writes llama_gqa_tied.gguf the way llama.cpp's converter does: our GGUF of the
  // same HF folder holds the same tensor bytes.
  TempDir dir("perm");
  to_gguf(test::ref_dir() + "/llama_gqa_tied", dir / "ours.gguf");
  const GGUFFile ours = GGUFFile::open(dir / "ours.gguf");
  const GGUFFile theirs = GGUFFile::open(test::ref_dir() + "/llama_gqa_tied.gguf");
  for (const GGUFTensorInfo &t : theirs.tensors()) {
    const GGUFTensorInfo *o = ours.find_tensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    ASSERT_EQ(o->nbytes, t.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(ours.tensor(*o).data(), theirs.tensor(t).data(), t.nbytes), 0) << t.name;
  }
  // llama3 scaling: rope_freqs.weight, plus lmkit's own keys to get the settings back.
  to_gguf(test::ref_dir() + "/llama_untied_scaled", dir / "scaled.gguf");
  const GGUFFile s = GGUFFile::open(dir / "scaled.gguf");
  const GGUFTensorInfo *rf = s.find_tensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  EXPECT_EQ(rf->shape[0], 8);  // rope_dim / 2
  Llama3Rope l3;
  ASSERT_TRUE(gguf_read_llama3_rope(s, l3));
  EXPECT_EQ(l3.factor, 8.0f);
  EXPECT_EQ(l3.orig_ctx, 8192);
  // linear scaling as llama.cpp's keys
  to_gguf(test::ref_dir() + "/llama_linear_scaled", dir / "linear.gguf");
  const GGUFFile lin = GGUFFile::open(dir / "linear.gguf");
  EXPECT_EQ(lin.get_str("llama.rope.scaling.type"), "linear");
  EXPECT_EQ(lin.get_float("llama.rope.scaling.factor"), 2.0);
  EXPECT_EQ(lin.get_int("llama.attention.key_length"), 32);
}

TEST(Convert, GgufToHfFolderRoundTrips) {
  TempDir dir("gguf2hf");
  for (const std::string &name : test::ref_models()) {
    SCOPED_TRACE(name);
    const std::string hf_path = test::ref_dir() + "/" + name;
    to_gguf(hf_path, dir / (name + ".gguf"));
    to_hf(dir / (name + ".gguf"), dir / name);
    for (const char *file : {"config.json", "model.safetensors", "generation_config.json",
                             "tokenizer.json", "tokenizer_config.json"})
      EXPECT_TRUE(fs::exists(fs::path(dir / name) / file)) << file;
    const LoadedModel hf = load_model(hf_path), back = load_model(dir / name);
    const ModelConfig &a = hf.model->config(), &b = back.model->config();
    EXPECT_EQ(b.arch, a.arch);
    EXPECT_EQ(b.rope_style, a.rope_style);
    EXPECT_EQ(b.rope_scaling, a.rope_scaling);
    EXPECT_EQ(b.sliding_window, a.sliding_window);
    const std::vector<int32_t> toks = test::ref_prompt(name);
    EXPECT_LT(test::rel_max(test::logits_all(*back.model, toks), test::logits_all(*hf.model, toks)),
              1e-5);
    ASSERT_NE(back.tokenizer, nullptr);
    expect_tokenizes_like_reference(*back.tokenizer, name);
  }
  // GGUF files written by another converter (make_models.py, as llama.cpp's) come back too.
  for (const std::string name : {"llama_gqa_tied", "qwen2_bias", "gpt2"}) {
    SCOPED_TRACE(name + ".gguf");
    to_hf(test::ref_dir() + "/" + name + ".gguf", dir / (name + "-py"));
    const LoadedModel hf = load_model(test::ref_dir() + "/" + name),
                      back = load_model(dir / (name + "-py"));
    const std::vector<int32_t> toks = test::ref_prompt(name);
    EXPECT_LT(test::rel_max(test::logits_all(*back.model, toks), test::logits_all(*hf.model, toks)),
              1e-5);
    expect_tokenizes_like_reference(*back.tokenizer, name);
  }
}

TEST(Convert, QuantizedGgufToHfDequantizes) {
  TempDir dir("q2hf");
  ThreadPool pool(2);
  const auto f32 = test::kquant_model(false, 3);
  QuantizeOptions opt;
  opt.type = DType::Q4_K;
  const ModelTensors q = quantize_model(to_gguf_layout(model_tensors(*f32)), opt, pool);
  gguf_write(q, nullptr, dir / "q.gguf", {"q", DType::Q4_K, {}});
  to_hf(dir / "q.gguf", dir / "hf");
  const std::vector<int32_t> toks = {1, 5, 9, 200, 7};
  // The folder holds the dequantized values: the model it gives equals the quantized one up to
  // the kernels' activation rounding.
  const LoadedModel back = load_model(dir / "hf");
  EXPECT_EQ(back.model->weights().layers[0].wq.w.dtype(), DType::F32);
  EXPECT_LT(test::rel_rms(test::logits_all(*back.model, toks),
                          test::logits_all(*load_model(dir / "q.gguf").model, toks)),
            0.02);
}

TEST(Convert, OutputsAreNeverLeftHalfWritten) {
  TempDir dir("atomic");
  const std::string hf_path = test::ref_dir() + "/llama_gqa_tied";
  // An existing, non-empty folder is refused and left as it was.
  fs::create_directories(dir / "taken");
  { std::ofstream(dir / "taken/keep.txt") << "mine"; }
  EXPECT_THROW(to_hf(hf_path, dir / "taken"), Error);
  EXPECT_EQ(read_file(dir / "taken/keep.txt"), "mine");
  // An empty folder is filled; no temporary folder stays behind.
  fs::create_directories(dir / "empty");
  to_hf(hf_path, dir / "empty");
  EXPECT_TRUE(fs::exists(dir / "empty/model.safetensors"));
  for (const auto &e : fs::directory_iterator(dir.str()))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// llama.cpp's tokenizer conformance vectors through GGUF -> tokenizer.json -> lmkit.
TEST(Convert, VocabulariesSurviveGgufToTokenizerJson) {
  LMKIT_REQUIRE_SHARED();
  for (const std::string name : {"llama-spm", "gpt-2", "starcoder"}) {
    SCOPED_TRACE(name);
    TempDir dir("vocab");
    const GGUFFile f = GGUFFile::open(test::vocab_path(name));
    const Vocab v = vocab_from_gguf(f);
    vocab_to_hf(v, dir.str());
    const auto tok = tokenizer_from_hf(dir.str());
    EXPECT_EQ(test::conformance_report(*tok, test::load_vocab_cases(name)), "");
    // And back to GGUF: the same keys a GGUF reader needs.
    GGUFWriter w;
    w.set_str("general.architecture", "llama");
    vocab_to_gguf(vocab_from_hf(dir.str()), w);
    w.write(dir / "v.gguf");
    const auto tok2 = tokenizer_from_gguf(GGUFFile::open(dir / "v.gguf"));
    EXPECT_EQ(test::conformance_report(*tok2, test::load_vocab_cases(name)), "");
  }
}

// stories260K (llama2.c): its SentencePiece vocabulary into GGUF and into tokenizer.json.
TEST(Convert, Llama2cToGgufAndHfKeepsTheTokenizer) {
  LMKIT_REQUIRE_SHARED();
  TempDir dir("l2c");
  const std::string bin = test::shared_dir() + "/models/stories260K/stories260K.bin";
  to_gguf(bin, dir / "s.gguf");
  to_hf(bin, dir / "hf");
  const LoadedModel src = load_model(bin), gg = load_model(dir / "s.gguf"),
                    hf = load_model(dir / "hf");
  const std::vector<int32_t> toks = src.tokenizer->encode("Once upon a time, there was a cat.");
  const std::vector<float> ref = test::logits_all(*src.model, toks);
  EXPECT_TRUE(test::same_bits(test::logits_all(*gg.model, toks), ref));  // no layout change
  EXPECT_LT(test::rel_max(test::logits_all(*hf.model, toks), ref), 1e-5);
  for (const char *text : {"Once upon a time, Lily saw a big dog.", "Tom said: \"Hi!\"\n\nThe end.",
                           "  two spaces, ümlaut and 😀 emoji"}) {
    EXPECT_EQ(gg.tokenizer->encode(text), src.tokenizer->encode(text)) << text;
    EXPECT_EQ(hf.tokenizer->encode(text), src.tokenizer->encode(text)) << text;
    EXPECT_EQ(hf.tokenizer->decode(hf.tokenizer->encode(text)), text);
  }
}

}  // namespace
}  // namespace lmkit
