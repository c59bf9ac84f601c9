// llama2.c checkpoint layout, following export.py's legacy_export (v0) and version1_export (v1).
#include "io/llama2c.h"

#include <cstring>
#include <vector>

#include "core/error.h"

namespace lmkit {

namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42"

bool plausible(const Llama2cHeader &h) {
  auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
  return in(h.dim, 1, 1 << 16) && in(h.hidden_dim, 1, 1 << 18) && in(h.n_layers, 1, 1024) &&
         in(h.n_heads, 1, 1024) && in(h.n_kv_heads, 1, 1024) && in(h.vocab_size, 1, 1 << 22) &&
         in(h.seq_len, 1, 1 << 22);
}

Llama2cHeader read_header(const uint8_t *bytes, size_t size, const std::string &name,
                          size_t &offset) {
  Llama2cHeader h;
  int32_t v[7];
  uint32_t magic = 0;
  if (size >= 4) std::memcpy(&magic, bytes, 4);
  if (magic == kMagicV1) {
    LMKIT_CHECK(size >= 256, name, ": truncated llama2.c v1 header");
    int32_t version;
    std::memcpy(&version, bytes + 4, 4);
    LMKIT_CHECK(version == 1, name, ": llama2.c checkpoint version ", version,
                " is not supported (lmkit reads the float32 versions 0 and 1)");
    std::memcpy(v, bytes + 8, sizeof v);
    h.version = 1;
    h.shared_classifier = bytes[8 + sizeof v] != 0;
    offset = 256;
  } else {
    LMKIT_CHECK(size >= sizeof v, name, ": truncated llama2.c header (", size, " bytes)");
    std::memcpy(v, bytes, sizeof v);
    // v0: a negative vocab size means the classifier is stored separately.
    h.shared_classifier = v[5] > 0;
    if (v[5] < 0) v[5] = -v[5];
    offset = sizeof v;
  }
  h.dim = v[0];
  h.hidden_dim = v[1];
  h.n_layers = v[2];
  h.n_heads = v[3];
  h.n_kv_heads = v[4];
  h.vocab_size = v[5];
  h.seq_len = v[6];
  LMKIT_CHECK(plausible(h), name, ": not a llama2.c checkpoint (implausible header: dim=", h.dim,
              " hidden_dim=", h.hidden_dim, " n_layers=", h.n_layers, " n_heads=", h.n_heads,
              " n_kv_heads=", h.n_kv_heads, " vocab_size=", h.vocab_size, " seq_len=", h.seq_len,
              ")");
  LMKIT_CHECK(h.dim % h.n_heads == 0 && h.n_heads % h.n_kv_heads == 0, name, ": dim ", h.dim,
              " / n_heads ", h.n_heads, " / n_kv_heads ", h.n_kv_heads, " are inconsistent");
  return h;
}

}  // namespace

bool llama2c_sniff(const uint8_t *bytes, size_t size) {
  try {
    size_t off = 0;
    read_header(bytes, size, "", off);
    return true;
  } catch (const Error &) {
    return false;
  }
}

Llama2cFile Llama2cFile::open(const std::string &path) {
  auto map = MappedFile::open(path);
  return parse(map->data(), map->size(), path, map);
}

Llama2cFile Llama2cFile::parse(const uint8_t *bytes, size_t size, const std::string &name,
                               std::shared_ptr<void> owner) {
  Llama2cFile f;
  f.path = name;
  size_t off = 0;
  f.header = read_header(bytes, size, name, off);
  const Llama2cHeader &h = f.header;
  const int64_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers;
  const int64_t head = dim / h.n_heads, kv_dim = head * h.n_kv_heads;

  // Every array in file order; `per_layer` arrays are stacked over layers.
  struct Array {
    std::string name;  // with {L} for per-layer arrays
    Shape shape;       // of one layer's slice
    bool per_layer;
  };
  const Array embd{"token_embd.weight", {h.vocab_size, dim}, false};
  const Array att_norm{"blk.{L}.attn_norm.weight", {dim}, true};
  const Array wq{"blk.{L}.attn_q.weight", {dim, dim}, true};
  const Array wk{"blk.{L}.attn_k.weight", {kv_dim, dim}, true};
  const Array wv{"blk.{L}.attn_v.weight", {kv_dim, dim}, true};
  const Array wo{"blk.{L}.attn_output.weight", {dim, dim}, true};
  const Array ffn_norm{"blk.{L}.ffn_norm.weight", {dim}, true};
  const Array w1{"blk.{L}.ffn_gate.weight", {hidden, dim}, true};
  const Array w2{"blk.{L}.ffn_down.weight", {dim, hidden}, true};
  const Array w3{"blk.{L}.ffn_up.weight", {hidden, dim}, true};
  const Array out_norm{"output_norm.weight", {dim}, false};
  const Array rope_re{"", {h.seq_len, head / 2}, false};  // unused freq_cis arrays (v0 only)
  const Array wcls{"output.weight", {h.vocab_size, dim}, false};

  std::vector<Array> order;
  if (h.version == 0)
    order = {embd, att_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, out_norm, rope_re, rope_re};
  else
    order = {att_norm, ffn_norm, out_norm, embd, wq, wk, wv, wo, w1, w2, w3};
  if (!h.shared_classifier) order.push_back(wcls);

  for (const Array &a : order) {
    size_t one = size_t(a.shape.numel()) * 4;
    size_t total = one * size_t(a.per_layer ? L : 1);
    LMKIT_CHECK(total <= size - off, name, ": truncated llama2.c checkpoint (needs ", off + total,
                "+ bytes for ", a.name.empty() ? "freq_cis" : a.name, ", file has ", size, ")");
    if (!a.name.empty()) {
      for (int64_t l = 0; l < (a.per_layer ? L : 1); ++l) {
        std::string n = a.name;
        if (a.per_layer) n.replace(n.find("{L}"), 3, std::to_string(l));
        auto *p = const_cast<uint8_t *>(bytes + off + size_t(l) * one);
        f.tensors[n] = Tensor::view_of(p, DType::F32, a.shape, owner);
      }
    }
    off += total;
  }
  return f;
}

}  // namespace lmkit
