// safetensors parsing with every offset checked against the file: corrupt files give an Error.
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace lmkit {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeader = 100ull << 20;  // 100 MiB, as the reference implementation caps

size_t st_dtype_size(const std::string &d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string &path) {
  auto map = MappedFile::open(path);
  SafetensorsFile f = parse(map->data(), map->size(), path);
  f.map_ = std::move(map);
  return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t *bytes, size_t size, const std::string &name) {
  SafetensorsFile f;
  f.path_ = name;
  LMKIT_CHECK(size >= 8, name, ": not a safetensors file (", size, " bytes, too short)");
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  LMKIT_CHECK(n <= kMaxHeader && n <= size - 8, name, ": header length ", n,
              " exceeds the file size ", size, " (truncated or not safetensors)");
  json h;
  try {
    h = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const json::exception &e) {
    fail(name, ": header is not valid JSON (", e.what(), ")");
  }
  LMKIT_CHECK(h.is_object(), name, ": header is not a JSON object");
  f.data_ = bytes + 8 + n;
  f.data_size_ = size - 8 - size_t(n);
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string &key = it.key();
    const json &v = it.value();
    if (key == "__metadata__") {
      LMKIT_CHECK(v.is_object(), name, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        LMKIT_CHECK(m.value().is_string(), name, ": __metadata__ value '", m.key(),
                    "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    LMKIT_CHECK(
        v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
        name, ": tensor '", key, "' lacks dtype/shape/data_offsets");
    SafetensorsInfo ti;
    ti.name = key;
    LMKIT_CHECK(v["dtype"].is_string(), name, ": tensor '", key, "' dtype is not a string");
    ti.dtype = v["dtype"].get<std::string>();
    size_t es = st_dtype_size(ti.dtype);
    LMKIT_CHECK(es != 0, name, ": tensor '", key, "' has unknown dtype '", ti.dtype, "'");
    const json &sh = v["shape"];
    LMKIT_CHECK(sh.is_array() && sh.size() <= size_t(kMaxDims), name, ": tensor '", key,
                "' shape must be a list of at most ", kMaxDims, " dims");
    uint64_t numel = 1;
    ti.shape.ndim = int(sh.size());
    for (size_t d = 0; d < sh.size(); ++d) {
      LMKIT_CHECK(sh[d].is_number_unsigned(), name, ": tensor '", key,
                  "' has a non-integer dimension");
      uint64_t dim = sh[d].get<uint64_t>();
      LMKIT_CHECK(dim <= (uint64_t(1) << 40) && (dim == 0 || numel <= (uint64_t(1) << 48) / dim),
                  name, ": tensor '", key, "' has absurd dimensions");
      numel *= dim;
      ti.shape.dims[d] = int64_t(dim);
    }
    const json &off = v["data_offsets"];
    LMKIT_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                    off[1].is_number_unsigned(),
                name, ": tensor '", key, "' data_offsets must be [begin, end]");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    LMKIT_CHECK(b <= e && e <= f.data_size_, name, ": tensor '", key, "' data [", b, ", ", e,
                ") lies outside the file's ", f.data_size_, " data bytes (truncated?)");
    LMKIT_CHECK(e - b == numel * es, name, ": tensor '", key, "' has ", e - b, " bytes but shape ",
                ti.shape.str(), " of ", ti.dtype, " needs ", numel * es);
    ti.begin = size_t(b);
    ti.end = size_t(e);
    f.index_[key] = f.tensors_.size();
    f.tensors_.push_back(std::move(ti));
  }
  return f;
}

const SafetensorsInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(const SafetensorsInfo &t) const {
  DType dt;
  if (t.dtype == "F32")
    dt = DType::F32;
  else if (t.dtype == "F16")
    dt = DType::F16;
  else if (t.dtype == "BF16")
    dt = DType::BF16;
  else
    fail(path_, ": tensor '", t.name, "' has dtype ", t.dtype,
         ", which lmkit cannot load (supported: F32, F16, BF16)");
  const uint8_t *p = data_ + t.begin;
  Tensor v = Tensor::view_of(const_cast<uint8_t *>(p), dt, t.shape, map_);
  size_t es = dtype_info(dt).block_bytes;
  if (reinterpret_cast<uintptr_t>(p) % es != 0) return v.contiguous();  // aligned copy
  return v;
}

SafetensorsSet SafetensorsSet::open_dir(const std::string &dir) {
  namespace fs = std::filesystem;
  SafetensorsSet s;
  s.dir_ = dir;
  fs::path index = fs::path(dir) / "model.safetensors.index.json";
  fs::path single = fs::path(dir) / "model.safetensors";
  std::vector<std::string> files;
  if (fs::exists(index)) {
    json j;
    try {
      j = json::parse(read_file(index.string()));
    } catch (const json::exception &e) {
      fail(index.string(), ": not valid JSON (", e.what(), ")");
    }
    LMKIT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                index.string(), ": no weight_map object");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      LMKIT_CHECK(it.value().is_string(), index.string(), ": weight_map entry '", it.key(),
                  "' is not a file name");
      std::string fname = it.value().get<std::string>();
      LMKIT_CHECK(fname.find('/') == std::string::npos && fname.find("..") == std::string::npos,
                  index.string(), ": shard name '", fname, "' must be a plain file name");
      if (std::find(files.begin(), files.end(), fname) == files.end()) files.push_back(fname);
    }
  } else if (fs::exists(single)) {
    files.push_back("model.safetensors");
  } else {
    fail(dir, ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto &fname : files) {
    s.files_.push_back(SafetensorsFile::open((fs::path(dir) / fname).string()));
    const auto &f = s.files_.back();
    for (size_t k = 0; k < f.tensors().size(); ++k) {
      const std::string &n = f.tensors()[k].name;
      LMKIT_CHECK(!s.where_.count(n), dir, ": tensor '", n, "' appears in two shards");
      s.where_[n] = {s.files_.size() - 1, k};
    }
  }
  return s;
}

Tensor SafetensorsSet::get(const std::string &name) const {
  auto it = where_.find(name);
  LMKIT_CHECK(it != where_.end(), dir_, ": missing tensor '", name, "'");
  const SafetensorsFile &f = files_[it->second.first];
  return f.tensor(f.tensors()[it->second.second]);
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> n;
  for (const auto &kv : where_) n.push_back(kv.first);
  return n;
}

const std::map<std::string, std::string> &SafetensorsSet::metadata() const {
  static const std::map<std::string, std::string> empty;
  return files_.empty() ? empty : files_.front().metadata();
}

void safetensors_write(const std::string &path,
                       const std::vector<std::pair<std::string, Tensor>> &tensors,
                       const std::map<std::string, std::string> &metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<const std::pair<std::string, Tensor> *> order;
  for (const auto &t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto *a, auto *b) { return a->first < b->first; });
  size_t off = 0;
  for (const auto *t : order) {
    const Tensor &x = t->second;
    LMKIT_CHECK(x.is_contiguous(), "safetensors: tensor '", t->first, "' is not contiguous");
    std::string dt = x.dtype() == DType::F32    ? "F32"
                     : x.dtype() == DType::F16  ? "F16"
                     : x.dtype() == DType::BF16 ? "BF16"
                                                : "";
    LMKIT_CHECK(!dt.empty(), "safetensors: tensor '", t->first, "' has unsupported dtype");
    std::vector<int64_t> shape(x.shape().dims.begin(), x.shape().dims.begin() + x.ndim());
    h[t->first] = {{"dtype", dt}, {"shape", shape}, {"data_offsets", {off, off + x.nbytes()}}};
    off += x.nbytes();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  AtomicFile f(path);
  uint64_t n = header.size();
  f.write(&n, 8);
  f.write(header);
  for (const auto *t : order) f.write(t->second.data(), t->second.nbytes());
  f.commit();
}

}  // namespace lmkit
