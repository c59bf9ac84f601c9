// GGUF v2/v3 reader and writer: metadata key/values and tensor directory, tensors as views into
// the memory-mapped file. Not a model loader: model/ maps GGUF names and metadata onto its config.
// Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"

namespace lmkit {

enum class GGUFType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

struct GGUFValue {
  GGUFType type = GGUFType::U8;
  GGUFType elem = GGUFType::U8;   // for arrays
  int64_t i = 0;                  // integer and bool scalars
  double f = 0;                   // float scalars
  std::string s;                  // string scalars
  std::vector<std::string> strs;  // string arrays
  std::vector<double> nums;       // numeric and bool arrays

  bool is_array() const { return type == GGUFType::ARRAY; }
  bool is_int() const;
  bool is_float() const { return type == GGUFType::F32 || type == GGUFType::F64; }
};

struct GGUFTensorInfo {
  std::string name;
  Shape shape;             // PyTorch order (GGUF's ne[] reversed): a Linear weight is {out, in}
  uint32_t ggml_type = 0;  // raw GGUF/ggml type id
  uint64_t offset = 0;     // from the start of the data section
  size_t nbytes = 0;
};

class GGUFFile {
 public:
  // Parses the header, metadata and tensor directory; checks every tensor lies inside the file.
  // Throws lmkit::Error naming the path and the problem for anything malformed.
  static GGUFFile open(const std::string &path);
  // Same, over bytes already in memory (fuzzing, tests). `bytes` must outlive the result.
  static GGUFFile parse(const uint8_t *bytes, size_t size, const std::string &name);

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::string &path() const { return path_; }
  const std::map<std::string, GGUFValue> &metadata() const { return kv_; }
  const std::vector<GGUFTensorInfo> &tensors() const { return tensors_; }

  bool has(const std::string &key) const { return kv_.count(key) != 0; }
  const GGUFValue *find(const std::string &key) const;
  // Typed getters: throw when missing (unless a default is given) or of the wrong kind.
  std::string get_str(const std::string &key) const;
  std::string get_str(const std::string &key, const std::string &def) const;
  int64_t get_int(const std::string &key) const;
  int64_t get_int(const std::string &key, int64_t def) const;
  double get_float(const std::string &key) const;
  double get_float(const std::string &key, double def) const;
  bool get_bool(const std::string &key, bool def) const;
  const std::vector<std::string> &get_str_array(const std::string &key) const;
  std::vector<float> get_f32_array(const std::string &key) const;
  std::vector<int32_t> get_i32_array(const std::string &key) const;

  const GGUFTensorInfo *find_tensor(const std::string &name) const;
  // A view of the tensor's bytes (kept alive by the mapping). Throws for a type lmkit cannot load.
  Tensor tensor(const GGUFTensorInfo &t) const;

 private:
  std::shared_ptr<MappedFile> map_;
  const uint8_t *base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::map<std::string, GGUFValue> kv_;
  std::vector<GGUFTensorInfo> tensors_;
};

// Name of a ggml tensor type id ("f32", "q4_K", ...) for messages; "type N" when unknown.
std::string ggml_type_name(uint32_t t);

// Writes a GGUF v3 file atomically (temp file, fsync, rename). Tensors are written in the order
// added; their data is copied when write() runs, so the sources must stay alive until then.
class GGUFWriter {
 public:
  void set(const std::string &key, const GGUFValue &v);
  void set_str(const std::string &key, const std::string &v);
  void set_u32(const std::string &key, uint32_t v);
  void set_i32(const std::string &key, int32_t v);
  void set_f32(const std::string &key, float v);
  void set_bool(const std::string &key, bool v);
  void set_str_array(const std::string &key, const std::vector<std::string> &v);
  void set_f32_array(const std::string &key, const std::vector<float> &v);
  void set_i32_array(const std::string &key, const std::vector<int32_t> &v);
  // A contiguous tensor of a dtype GGUF knows: f32, f16, bf16 or a block type in its GGUF layout
  // (q4_0 ... q8_K, as kernels/quant.h quantizes them).
  void add_tensor(const std::string &name, const Tensor &t);
  void write(const std::string &path, size_t alignment = 32) const;

 private:
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

}  // namespace lmkit
