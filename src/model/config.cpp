// Mapping of HF config.json, GGUF metadata and llama2.c headers onto ModelConfig.
#include "model/config.h"

#include <cstdlib>
#include <iomanip>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/llama2c.h"

namespace lmkit {

using json = nlohmann::json;

const char *supported_model_types() {
  return "llama, mistral, qwen2, gpt2";
}

void ModelConfig::validate() const {
  auto positive = [&](int64_t v, const char *n) {
    LMKIT_CHECK(v > 0, "model config: ", n, " must be positive, got ", v);
  };
  positive(n_vocab, "vocab size");
  positive(n_embd, "hidden size");
  positive(n_layer, "layer count");
  positive(n_head, "head count");
  positive(n_head_kv, "KV head count");
  positive(head_dim, "head dim");
  positive(n_ff, "MLP size");
  positive(n_ctx_train, "context length");
  LMKIT_CHECK(n_head % n_head_kv == 0, "model config: ", n_head, " heads are not divisible into ",
              n_head_kv, " KV groups");
  LMKIT_CHECK(norm_eps > 0 && norm_eps < 1, "model config: norm eps ", norm_eps,
              " is out of range");
  if (pos == PosEncoding::RoPE) {
    LMKIT_CHECK(rope_dim > 0 && rope_dim <= head_dim && rope_dim % 2 == 0,
                "model config: RoPE dims ", rope_dim, " must be even and at most the head dim ",
                head_dim);
    LMKIT_CHECK(rope_theta > 0, "model config: rope_theta must be positive");
    LMKIT_CHECK(rope_factor > 0, "model config: rope scaling factor must be positive");
  }
  if (rope_scaling == RopeScaling::Llama3)
    LMKIT_CHECK(rope_orig_ctx > 0 && rope_high_freq_factor > rope_low_freq_factor,
                "model config: llama3 rope scaling needs original_max_position_embeddings and "
                "high_freq_factor > low_freq_factor");
  LMKIT_CHECK(sliding_window.empty() || int64_t(sliding_window.size()) == n_layer,
              "model config: sliding windows given for ", sliding_window.size(), " of ", n_layer,
              " layers");
  for (int64_t w : sliding_window) LMKIT_CHECK(w >= 0, "model config: negative sliding window ", w);
  LMKIT_CHECK(n_vocab < (int64_t(1) << 31), "model config: vocab too large");
}

nlohmann::ordered_json ModelConfig::to_json() const {
  auto name = [](auto e, std::initializer_list<const char *> names) {
    return std::string(*(names.begin() + int(e)));
  };
  // A float field as the shortest decimal that reads back to it (1e-05, not 9.99999974e-06).
  auto num = [](float f) { return std::strtod(str_cat(std::setprecision(7), f).c_str(), nullptr); };
  nlohmann::ordered_json j;
  j["arch"] = arch;
  j["n_vocab"] = n_vocab;
  j["n_embd"] = n_embd;
  j["n_layer"] = n_layer;
  j["n_head"] = n_head;
  j["n_head_kv"] = n_head_kv;
  j["head_dim"] = head_dim;
  j["n_ff"] = n_ff;
  j["n_ctx_train"] = n_ctx_train;
  j["norm"] = name(norm, {"rmsnorm", "layernorm"});
  j["norm_eps"] = num(norm_eps);
  j["pos"] = name(pos, {"rope", "learned"});
  j["mlp"] = name(mlp, {"swiglu", "gelu", "gelu_tanh"});
  if (pos == PosEncoding::RoPE) {
    j["rope_theta"] = num(rope_theta);
    j["rope_style"] = name(rope_style, {"interleaved", "half"});
    j["rope_dim"] = rope_dim;
    j["rope_scaling"] = name(rope_scaling, {"none", "linear", "llama3"});
    if (rope_scaling != RopeScaling::None) j["rope_factor"] = num(rope_factor);
    if (rope_scaling == RopeScaling::Llama3) {
      j["rope_low_freq_factor"] = num(rope_low_freq_factor);
      j["rope_high_freq_factor"] = num(rope_high_freq_factor);
      j["rope_orig_ctx"] = rope_orig_ctx;
    }
  }
  j["qkv_bias"] = qkv_bias;
  j["attn_out_bias"] = attn_out_bias;
  j["mlp_bias"] = mlp_bias;
  j["norm_bias"] = norm_bias;
  j["tied_embeddings"] = tied_embeddings;
  j["sliding_window"] = sliding_window;
  j["bos_id"] = bos_id;
  j["eos_id"] = eos_id;
  j["dtype"] = std::string(dtype_name(dtype));
  return j;
}

namespace {

// Typed access to config.json fields with messages that name the file and the key.
struct HFReader {
  const json &j;
  const std::string &where;

  bool has(const char *k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t get_int(const char *k) const {
    LMKIT_CHECK(has(k), where, ": missing '", k, "'");
    LMKIT_CHECK(j[k].is_number_integer(), where, ": '", k, "' must be an integer");
    return j[k].get<int64_t>();
  }
  int64_t get_int(const char *k, int64_t def) const { return has(k) ? get_int(k) : def; }
  double get_num(const char *k, double def) const {
    if (!has(k)) return def;
    LMKIT_CHECK(j[k].is_number(), where, ": '", k, "' must be a number");
    return j[k].get<double>();
  }
  bool get_bool(const char *k, bool def) const {
    if (!has(k)) return def;
    LMKIT_CHECK(j[k].is_boolean(), where, ": '", k, "' must be true or false");
    return j[k].get<bool>();
  }
  std::string get_str(const char *k, const std::string &def) const {
    if (!has(k)) return def;
    LMKIT_CHECK(j[k].is_string(), where, ": '", k, "' must be a string");
    return j[k].get<std::string>();
  }
  // bos/eos ids may be an int or a list of ints (the first is the primary one).
  int32_t get_token_id(const char *k) const {
    if (!has(k)) return -1;
    const json &v = j[k];
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int32_t>();
    LMKIT_CHECK(v.is_number_integer(), where, ": '", k, "' must be a token id");
    return v.get<int32_t>();
  }
};

void read_rope_scaling(const HFReader &r, ModelConfig &c) {
  if (!r.has("rope_scaling")) return;
  const json &s = r.j["rope_scaling"];
  LMKIT_CHECK(s.is_object(), r.where, ": 'rope_scaling' must be an object or null");
  HFReader sr{s, r.where};
  std::string type = sr.get_str("rope_type", sr.get_str("type", "default"));
  if (type == "default") return;
  c.rope_factor = float(sr.get_num("factor", 1.0));
  if (type == "linear") {
    c.rope_scaling = RopeScaling::Linear;
  } else if (type == "llama3") {
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_low_freq_factor = float(sr.get_num("low_freq_factor", 1.0));
    c.rope_high_freq_factor = float(sr.get_num("high_freq_factor", 4.0));
    c.rope_orig_ctx = sr.get_int("original_max_position_embeddings", 8192);
  } else {
    fail(r.where, ": rope_scaling type '", type, "' is not supported (supported: linear, llama3)");
  }
}

ModelConfig llama_like_from_hf(const HFReader &r, const std::string &type) {
  ModelConfig c;
  c.arch = type;
  c.n_vocab = r.get_int("vocab_size");
  c.n_embd = r.get_int("hidden_size");
  c.n_layer = r.get_int("num_hidden_layers");
  c.n_head = r.get_int("num_attention_heads");
  c.n_head_kv = r.get_int("num_key_value_heads", c.n_head);
  LMKIT_CHECK(c.n_head > 0, r.where, ": num_attention_heads must be positive");
  c.head_dim = r.get_int("head_dim", c.n_embd / c.n_head);
  c.n_ff = r.get_int("intermediate_size");
  c.n_ctx_train = r.get_int("max_position_embeddings", 2048);
  c.norm = NormType::RMSNorm;
  c.norm_eps = float(r.get_num("rms_norm_eps", 1e-6));
  c.pos = PosEncoding::RoPE;
  c.rope_theta = float(r.get_num("rope_theta", 10000.0));
  c.rope_style = kernels::RopeStyle::Half;
  c.rope_dim = int64_t(double(c.head_dim) * r.get_num("partial_rotary_factor", 1.0));
  read_rope_scaling(r, c);
  std::string act = r.get_str("hidden_act", "silu");
  LMKIT_CHECK(act == "silu" || act == "swish", r.where, ": hidden_act '", act,
              "' is not supported for ", type, " (expected silu)");
  c.mlp = MlpType::SwiGLU;
  c.tied_embeddings = r.get_bool("tie_word_embeddings", false);
  if (type == "llama") {
    bool ab = r.get_bool("attention_bias", false);
    c.qkv_bias = c.attn_out_bias = ab;
    c.mlp_bias = r.get_bool("mlp_bias", false);
  } else if (type == "qwen2") {
    c.qkv_bias = true;
    if (r.get_bool("use_sliding_window", false) && r.has("sliding_window")) {
      int64_t w = r.get_int("sliding_window");
      int64_t first = r.get_int("max_window_layers", c.n_layer);
      c.sliding_window.assign(size_t(c.n_layer), 0);
      for (int64_t l = first; l < c.n_layer; ++l) c.sliding_window[size_t(l)] = w;
    }
  } else if (type == "mistral") {
    if (r.has("sliding_window"))
      c.sliding_window.assign(size_t(c.n_layer), r.get_int("sliding_window"));
  }
  return c;
}

ModelConfig gpt2_from_hf(const HFReader &r) {
  ModelConfig c;
  c.arch = "gpt2";
  c.n_vocab = r.get_int("vocab_size");
  c.n_embd = r.get_int("n_embd");
  c.n_layer = r.get_int("n_layer");
  c.n_head = c.n_head_kv = r.get_int("n_head");
  LMKIT_CHECK(c.n_head > 0, r.where, ": n_head must be positive");
  c.head_dim = c.n_embd / c.n_head;
  c.n_ff = r.get_int("n_inner", 4 * c.n_embd);
  c.n_ctx_train = r.get_int("n_positions", r.get_int("n_ctx", 1024));
  c.norm = NormType::LayerNorm;
  c.norm_eps = float(r.get_num("layer_norm_epsilon", 1e-5));
  c.pos = PosEncoding::Learned;
  std::string act = r.get_str("activation_function", "gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
    c.mlp = MlpType::GELUTanh;
  else if (act == "gelu")
    c.mlp = MlpType::GELU;
  else
    fail(r.where, ": activation_function '", act, "' is not supported (gelu_new, gelu)");
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = c.norm_bias = true;
  c.tied_embeddings = r.get_bool("tie_word_embeddings", true);
  return c;
}

}  // namespace

ModelConfig config_from_hf(const json &j, const std::string &where) {
  LMKIT_CHECK(j.is_object(), where, ": not a JSON object");
  HFReader r{j, where};
  LMKIT_CHECK(r.has("model_type"), where, ": no 'model_type' (supported: ", supported_model_types(),
              ")");
  std::string type = r.get_str("model_type", "");
  ModelConfig c;
  if (type == "llama" || type == "mistral" || type == "qwen2")
    c = llama_like_from_hf(r, type);
  else if (type == "gpt2")
    c = gpt2_from_hf(r);
  else
    fail(where, ": model_type '", type, "' is not supported (supported: ", supported_model_types(),
         ")");
  c.bos_id = r.get_token_id("bos_token_id");
  c.eos_id = r.get_token_id("eos_token_id");
  std::string td = r.get_str("torch_dtype", r.get_str("dtype", "float32"));
  c.dtype = td == "float16" ? DType::F16 : td == "bfloat16" ? DType::BF16 : DType::F32;
  c.validate();
  return c;
}

nlohmann::ordered_json config_to_hf(const ModelConfig &c) {
  nlohmann::ordered_json j;
  auto num = [](float f) { return std::strtod(str_cat(std::setprecision(7), f).c_str(), nullptr); };
  const char *td = c.dtype == DType::F16    ? "float16"
                   : c.dtype == DType::BF16 ? "bfloat16"
                                            : "float32";
  if (c.arch == "gpt2") {
    LMKIT_CHECK(c.n_head == c.n_head_kv && c.head_dim * c.n_head == c.n_embd,
                "a gpt2 config needs n_head == n_head_kv and head_dim * n_head == n_embd");
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["vocab_size"] = c.n_vocab;
    j["n_positions"] = c.n_ctx_train;
    j["n_embd"] = c.n_embd;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["n_inner"] = c.n_ff;
    j["activation_function"] = c.mlp == MlpType::GELU ? "gelu" : "gelu_new";
    j["layer_norm_epsilon"] = num(c.norm_eps);
    j["tie_word_embeddings"] = c.tied_embeddings;
  } else {
    static const std::map<std::string, std::string> arch = {{"llama", "LlamaForCausalLM"},
                                                            {"mistral", "MistralForCausalLM"},
                                                            {"qwen2", "Qwen2ForCausalLM"}};
    LMKIT_CHECK(arch.count(c.arch), "cannot write a config.json for arch '", c.arch, "'");
    LMKIT_CHECK(c.norm == NormType::RMSNorm && c.pos == PosEncoding::RoPE &&
                    c.mlp == MlpType::SwiGLU && c.rope_style == kernels::RopeStyle::Half &&
                    c.rope_dim == c.head_dim,
                "a ", c.arch, " config.json needs RMSNorm, half-paired full RoPE and SwiGLU");
    j["architectures"] = {arch.at(c.arch)};
    j["model_type"] = c.arch;
    j["vocab_size"] = c.n_vocab;
    j["hidden_size"] = c.n_embd;
    j["intermediate_size"] = c.n_ff;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.n_head_kv;
    j["head_dim"] = c.head_dim;
    j["max_position_embeddings"] = c.n_ctx_train;
    j["rms_norm_eps"] = num(c.norm_eps);
    j["rope_theta"] = num(c.rope_theta);
    if (c.rope_scaling == RopeScaling::Linear) {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", num(c.rope_factor)}};
    } else if (c.rope_scaling == RopeScaling::Llama3) {
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", num(c.rope_factor)},
                           {"low_freq_factor", num(c.rope_low_freq_factor)},
                           {"high_freq_factor", num(c.rope_high_freq_factor)},
                           {"original_max_position_embeddings", c.rope_orig_ctx}};
    } else {
      j["rope_scaling"] = nullptr;
    }
    j["hidden_act"] = "silu";
    j["tie_word_embeddings"] = c.tied_embeddings;
    if (c.arch == "llama") {
      LMKIT_CHECK(c.qkv_bias == c.attn_out_bias,
                  "llama's attention_bias covers q, k, v and o together");
      j["attention_bias"] = c.qkv_bias;
      j["mlp_bias"] = c.mlp_bias;
    } else if (c.arch == "qwen2") {
      LMKIT_CHECK(c.qkv_bias && !c.attn_out_bias && !c.mlp_bias, "qwen2 has q/k/v biases only");
      bool sw = !c.sliding_window.empty();
      j["use_sliding_window"] = sw;
      j["sliding_window"] = sw ? nlohmann::ordered_json(*std::max_element(c.sliding_window.begin(),
                                                                          c.sliding_window.end()))
                               : nlohmann::ordered_json(nullptr);
      int64_t first = c.n_layer;
      for (int64_t l = 0; l < c.n_layer && sw; ++l)
        if (c.sliding_window[size_t(l)] > 0) {
          first = l;
          break;
        }
      j["max_window_layers"] = first;
    } else {
      LMKIT_CHECK(!c.qkv_bias && !c.attn_out_bias && !c.mlp_bias, "mistral has no biases");
      j["sliding_window"] = c.sliding_window.empty() ? nlohmann::ordered_json(nullptr)
                                                     : nlohmann::ordered_json(c.sliding_window[0]);
    }
  }
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;
  j["torch_dtype"] = td;
  return j;
}

ModelConfig config_from_gguf(const GGUFFile &f) {
  std::string a = f.get_str("general.architecture");
  LMKIT_CHECK(a == "llama" || a == "qwen2" || a == "gpt2", f.path(), ": GGUF architecture '", a,
              "' is not supported (supported: llama, qwen2, gpt2)");
  auto key = [&](const char *k) { return a + "." + k; };
  ModelConfig c;
  c.arch = a;
  c.n_embd = f.get_int(key("embedding_length"));
  c.n_layer = f.get_int(key("block_count"));
  c.n_ff = f.get_int(key("feed_forward_length"));
  c.n_head = f.get_int(key("attention.head_count"));
  const GGUFValue *kv = f.find(key("attention.head_count_kv"));
  if (kv && kv->is_array()) {
    LMKIT_CHECK(!kv->nums.empty(), f.path(), ": empty attention.head_count_kv");
    for (double v : kv->nums)
      LMKIT_CHECK(v == kv->nums[0], f.path(), ": per-layer KV head counts are not supported");
    c.n_head_kv = int64_t(kv->nums[0]);
  } else {
    c.n_head_kv = f.get_int(key("attention.head_count_kv"), c.n_head);
  }
  LMKIT_CHECK(c.n_head > 0, f.path(), ": attention.head_count must be positive");
  c.head_dim = f.get_int(key("attention.key_length"), c.n_embd / c.n_head);
  c.n_ctx_train = f.get_int(key("context_length"), 2048);
  const GGUFTensorInfo *embd = f.find_tensor("token_embd.weight");
  int64_t vocab_default = embd ? embd->shape[0] : 0;
  if (!vocab_default && f.has("tokenizer.ggml.tokens"))
    vocab_default = int64_t(f.get_str_array("tokenizer.ggml.tokens").size());
  c.n_vocab = f.get_int(key("vocab_size"), vocab_default);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.bos_id = int32_t(f.get_int("tokenizer.ggml.bos_token_id", -1));
  c.eos_id = int32_t(f.get_int("tokenizer.ggml.eos_token_id", -1));
  if (a == "gpt2") {
    c.norm = NormType::LayerNorm;
    c.norm_eps = float(f.get_float(key("attention.layer_norm_epsilon"), 1e-5));
    c.pos = PosEncoding::Learned;
    c.mlp = MlpType::GELUTanh;
    c.qkv_bias = c.attn_out_bias = c.mlp_bias = c.norm_bias = true;
  } else {
    c.norm = NormType::RMSNorm;
    c.norm_eps = float(f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5));
    c.pos = PosEncoding::RoPE;
    c.mlp = MlpType::SwiGLU;
    c.rope_theta = float(f.get_float(key("rope.freq_base"), 10000.0));
    c.rope_dim = f.get_int(key("rope.dimension_count"), c.head_dim);
    // llama.cpp permutes llama Q/K rows for adjacent-pair RoPE; qwen2 keeps HF's half split.
    c.rope_style = a == "llama" ? kernels::RopeStyle::Interleaved : kernels::RopeStyle::Half;
    std::string st = f.get_str(key("rope.scaling.type"), "none");
    if (st == "linear") {
      c.rope_scaling = RopeScaling::Linear;
      c.rope_factor = float(f.get_float(key("rope.scaling.factor"), 1.0));
    } else {
      LMKIT_CHECK(st == "none", f.path(), ": rope scaling '", st,
                  "' is not supported (none, linear; llama3 scaling comes as rope_freqs.weight)");
    }
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.attn_out_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
    if (int64_t w = f.get_int(key("attention.sliding_window"), 0); w > 0)
      c.sliding_window.assign(size_t(c.n_layer), w);
  }
  // The display dtype: the first block's query matrix (the embedding table often differs).
  const GGUFTensorInfo *big = f.find_tensor("blk.0.attn_q.weight");
  if (!big) big = f.find_tensor("blk.0.attn_qkv.weight");
  if (!big) big = embd;
  if (big) {
    try {
      c.dtype = DType(big->ggml_type);
      (void)dtype_info(c.dtype);  // a type lmkit knows (loading the tensor says more if not)
    } catch (const Error &) {
      c.dtype = DType::F32;
    }
  }
  c.validate();
  return c;
}

ModelConfig config_from_llama2c(const Llama2cHeader &h) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = h.vocab_size;
  c.n_embd = h.dim;
  c.n_layer = h.n_layers;
  c.n_head = h.n_heads;
  c.n_head_kv = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.n_ff = h.hidden_dim;
  c.n_ctx_train = h.seq_len;
  c.norm = NormType::RMSNorm;
  c.norm_eps = 1e-5f;
  c.pos = PosEncoding::RoPE;
  c.rope_theta = 10000.0f;
  c.rope_style = kernels::RopeStyle::Interleaved;  // llama2.c rotates pairs (2i, 2i+1)
  c.rope_dim = c.head_dim;
  c.mlp = MlpType::SwiGLU;
  c.tied_embeddings = h.shared_classifier;
  c.bos_id = 1;
  c.eos_id = 2;
  c.validate();
  return c;
}

}  // namespace lmkit
