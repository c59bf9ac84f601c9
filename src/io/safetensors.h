// safetensors reader: the JSON header and tensors as views into the memory-mapped file, single
// files and sharded sets (model.safetensors.index.json). Not a model loader: model/ maps names.
// Format: 8-byte little-endian header length N, N bytes of JSON, then the raw tensor data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"

namespace lmkit {

struct SafetensorsInfo {
  std::string name;
  std::string dtype;  // as written: "F32", "F16", "BF16", "I64", ...
  Shape shape;
  size_t begin = 0, end = 0;  // byte offsets within the data section
};

class SafetensorsFile {
 public:
  // Parses and validates the header (every tensor inside the file, sizes consistent with shapes).
  static SafetensorsFile open(const std::string &path);
  static SafetensorsFile parse(const uint8_t *bytes, size_t size, const std::string &name);

  const std::string &path() const { return path_; }
  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  const std::vector<SafetensorsInfo> &tensors() const { return tensors_; }
  const SafetensorsInfo *find(const std::string &name) const;
  // A view of the tensor (f32/f16/bf16; copied to aligned memory if the file's offset is not
  // aligned to the element size). Throws for other dtypes.
  Tensor tensor(const SafetensorsInfo &t) const;

 private:
  std::shared_ptr<MappedFile> map_;
  const uint8_t *data_ = nullptr;  // start of the data section
  size_t data_size_ = 0;
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// All the safetensors of a Hugging Face model folder: model.safetensors, or the shards listed in
// model.safetensors.index.json (each shard opened once).
class SafetensorsSet {
 public:
  static SafetensorsSet open_dir(const std::string &dir);
  bool has(const std::string &name) const { return where_.count(name) != 0; }
  Tensor get(const std::string &name) const;  // throws naming the tensor and folder if missing
  std::vector<std::string> names() const;
  const std::map<std::string, std::string> &metadata() const;  // of the first file
  const std::string &dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (file, tensor index)
};

// Writes tensors to a .safetensors file atomically (header sorted by name, data 8-byte aligned).
void safetensors_write(const std::string &path,
                       const std::vector<std::pair<std::string, Tensor>> &t,
                       const std::map<std::string, std::string> &metadata = {{"format", "pt"}});

}  // namespace lmkit
