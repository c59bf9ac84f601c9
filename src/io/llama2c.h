// llama2.c checkpoints (.bin): the legacy v0 header (seven int32) and the v1 "ak42" float32
// header, as views into the memory-mapped file under GGUF-style tensor names. Not the tokenizer
// (tokenizer/ reads tokenizer .bin files) and not the int8 v2 export.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/mmap.h"
#include "core/tensor.h"

namespace lmkit {

struct Llama2cHeader {
  int32_t version = 0;  // 0 (legacy) or 1
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int32_t vocab_size = 0;  // always positive here
  int32_t seq_len = 0;
  bool shared_classifier = true;
};

struct Llama2cFile {
  Llama2cHeader header;
  // token_embd.weight (vocab, dim); blk.N.attn_norm.weight (dim); blk.N.attn_q.weight (dim, dim);
  // attn_k/attn_v (kv_dim, dim); attn_output (dim, dim); ffn_norm (dim); ffn_gate (hidden, dim);
  // ffn_down (dim, hidden); ffn_up (hidden, dim); output_norm.weight (dim);
  // output.weight (vocab, dim) only when the classifier is not shared (else it is token_embd).
  std::map<std::string, Tensor> tensors;
  std::string path;

  // Validates the header (positive, consistent sizes) and that the file holds every weight.
  static Llama2cFile open(const std::string &path);
  static Llama2cFile parse(const uint8_t *bytes, size_t size, const std::string &name,
                           std::shared_ptr<void> owner = {});
};

// True when the first bytes look like a llama2.c checkpoint (v1 magic, or a plausible v0 header).
bool llama2c_sniff(const uint8_t *bytes, size_t size);

}  // namespace lmkit
