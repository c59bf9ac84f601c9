// GGUF parsing with every read bounds-checked: a corrupt file gives an Error, never a crash.
#include "io/gguf.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"

namespace lmkit {

namespace {

struct GGMLTypeInfo {
  uint32_t id;
  const char *name;
  int64_t block;
  size_t block_bytes;
};

// The ggml types whose layout is known (for size checks and messages). tensor() loads those that
// core/dtype.h names (all but q2_K, q3_K and the integer types).
constexpr GGMLTypeInfo kGGMLTypes[] = {
    {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},    {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},
    {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292}, {24, "i8", 1, 1},       {25, "i16", 1, 2},
    {26, "i32", 1, 4},      {27, "i64", 1, 8},      {28, "f64", 1, 8},      {30, "bf16", 1, 2},
};

const GGMLTypeInfo *ggml_type_info(uint32_t t) {
  for (const auto &i : kGGMLTypes)
    if (i.id == t) return &i;
  return nullptr;
}

constexpr uint64_t kMaxKV = 1u << 20;
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxStringLen = 1u << 30;
// Real vocabularies hold a few hundred thousand entries; a numeric array is stored as doubles, so a
// cap keeps a crafted file from turning N bytes into 8N of heap.
constexpr uint64_t kMaxArrayLen = uint64_t(1) << 26;
// The smallest tensor directory entry: empty name (8), n_dims (4), dim (8), type (4), offset (8).
constexpr size_t kMinTensorInfoBytes = 32;

class Reader {
 public:
  Reader(const uint8_t *p, size_t n, const std::string &name) : p_(p), n_(n), name_(name) {}

  void need(size_t k, const char *what) {
    LMKIT_CHECK(k <= n_ - off_, name_, ": truncated GGUF file (reading ", what, " at byte ", off_,
                ", file has ", n_, " bytes)");
  }
  template <typename T>
  T get(const char *what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + off_, sizeof(T));
    off_ += sizeof(T);
    return v;
  }
  std::string str(const char *what) {
    uint64_t len = get<uint64_t>(what);
    LMKIT_CHECK(len <= kMaxStringLen, name_, ": string of absurd length ", len, " in ", what);
    need(size_t(len), what);
    std::string s(reinterpret_cast<const char *>(p_ + off_), size_t(len));
    off_ += size_t(len);
    return s;
  }
  size_t offset() const { return off_; }
  size_t remaining() const { return n_ - off_; }
  const std::string &name() const { return name_; }

 private:
  const uint8_t *p_;
  size_t n_;
  size_t off_ = 0;
  const std::string &name_;
};

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::U8:
    case GGUFType::I8:
    case GGUFType::BOOL:
      return 1;
    case GGUFType::U16:
    case GGUFType::I16:
      return 2;
    case GGUFType::U32:
    case GGUFType::I32:
    case GGUFType::F32:
      return 4;
    case GGUFType::U64:
    case GGUFType::I64:
    case GGUFType::F64:
      return 8;
    default:
      return 0;
  }
}

// Reads one scalar of numeric type t as (int, float) pair.
void read_number(Reader &r, GGUFType t, int64_t &i, double &f, const char *what) {
  switch (t) {
    case GGUFType::U8:
      i = r.get<uint8_t>(what);
      f = double(i);
      break;
    case GGUFType::I8:
      i = r.get<int8_t>(what);
      f = double(i);
      break;
    case GGUFType::BOOL:
      i = r.get<uint8_t>(what) != 0;
      f = double(i);
      break;
    case GGUFType::U16:
      i = r.get<uint16_t>(what);
      f = double(i);
      break;
    case GGUFType::I16:
      i = r.get<int16_t>(what);
      f = double(i);
      break;
    case GGUFType::U32:
      i = r.get<uint32_t>(what);
      f = double(i);
      break;
    case GGUFType::I32:
      i = r.get<int32_t>(what);
      f = double(i);
      break;
    case GGUFType::U64: {
      uint64_t u = r.get<uint64_t>(what);
      i = u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                            : int64_t(u);
      f = double(u);
      break;
    }
    case GGUFType::I64:
      i = r.get<int64_t>(what);
      f = double(i);
      break;
    case GGUFType::F32:
      f = r.get<float>(what);
      i = 0;
      break;
    case GGUFType::F64:
      f = r.get<double>(what);
      i = 0;
      break;
    default:
      fail(r.name(), ": bad GGUF value type ", uint32_t(t), " in ", what);
  }
}

GGUFValue read_value(Reader &r, GGUFType t, const std::string &key) {
  GGUFValue v;
  v.type = t;
  const char *what = key.c_str();
  if (t == GGUFType::STRING) {
    v.s = r.str(what);
  } else if (t == GGUFType::ARRAY) {
    v.elem = GGUFType(r.get<uint32_t>(what));
    uint64_t n = r.get<uint64_t>(what);
    LMKIT_CHECK(n <= kMaxArrayLen, r.name(), ": array '", key, "' claims ", n,
                " elements (lmkit reads at most ", kMaxArrayLen, ")");
    if (v.elem == GGUFType::STRING) {
      // each string takes at least its 8-byte length
      LMKIT_CHECK(n <= r.remaining() / 8, r.name(), ": array '", key, "' claims ", n,
                  " strings, more than the file holds");
      v.strs.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) v.strs.push_back(r.str(what));
    } else {
      size_t es = scalar_size(v.elem);
      LMKIT_CHECK(es != 0, r.name(), ": array '", key, "' has unsupported element type ",
                  uint32_t(v.elem));
      LMKIT_CHECK(n <= r.remaining() / es, r.name(), ": array '", key, "' claims ", n,
                  " elements, more than the file holds");
      v.nums.resize(size_t(n));
      for (uint64_t k = 0; k < n; ++k) {
        int64_t iv;
        double fv;
        read_number(r, v.elem, iv, fv, what);
        v.nums[size_t(k)] = (v.elem == GGUFType::F32 || v.elem == GGUFType::F64) ? fv : double(iv);
      }
    }
  } else {
    read_number(r, t, v.i, v.f, what);
    if (!v.is_float()) v.f = double(v.i);
  }
  return v;
}

}  // namespace

bool GGUFValue::is_int() const {
  switch (type) {
    case GGUFType::U8:
    case GGUFType::I8:
    case GGUFType::U16:
    case GGUFType::I16:
    case GGUFType::U32:
    case GGUFType::I32:
    case GGUFType::U64:
    case GGUFType::I64:
    case GGUFType::BOOL:
      return true;
    default:
      return false;
  }
}

std::string ggml_type_name(uint32_t t) {
  const GGMLTypeInfo *i = ggml_type_info(t);
  return i ? std::string(i->name) : str_cat("type ", t);
}

GGUFFile GGUFFile::open(const std::string &path) {
  auto map = MappedFile::open(path);
  GGUFFile f = parse(map->data(), map->size(), path);
  f.map_ = std::move(map);
  return f;
}

GGUFFile GGUFFile::parse(const uint8_t *bytes, size_t size, const std::string &name) {
  GGUFFile f;
  f.path_ = name;
  f.base_ = bytes;
  f.size_ = size;
  Reader r(bytes, size, f.path_);
  r.need(4, "magic");
  LMKIT_CHECK(std::memcmp(bytes, "GGUF", 4) == 0, name, ": not a GGUF file (bad magic)");
  r.get<uint32_t>("magic");
  f.version_ = r.get<uint32_t>("version");
  LMKIT_CHECK(f.version_ == 2 || f.version_ == 3, name, ": GGUF version ", f.version_,
              " is not supported (lmkit reads versions 2 and 3)");
  uint64_t n_tensors = r.get<uint64_t>("tensor count");
  uint64_t n_kv = r.get<uint64_t>("metadata count");
  LMKIT_CHECK(n_tensors <= kMaxTensors, name, ": absurd tensor count ", n_tensors);
  LMKIT_CHECK(n_kv <= kMaxKV, name, ": absurd metadata count ", n_kv);

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = r.str("metadata key");
    auto t = GGUFType(r.get<uint32_t>("metadata type"));
    LMKIT_CHECK(uint32_t(t) <= 12, name, ": metadata '", key, "' has unknown type ", uint32_t(t));
    LMKIT_CHECK(f.kv_.count(key) == 0, name, ": metadata key '", key, "' appears twice");
    f.kv_[key] = read_value(r, t, key);
  }
  if (const GGUFValue *a = f.find("general.alignment")) {
    LMKIT_CHECK(a->is_int() && a->i > 0 && a->i <= (1 << 20) && (a->i & (a->i - 1)) == 0, name,
                ": general.alignment must be a power of two");
    f.alignment_ = size_t(a->i);
  }

  // Checked before reserving: a 24-byte file must not be able to ask for a million entries.
  LMKIT_CHECK(n_tensors <= r.remaining() / kMinTensorInfoBytes, name, ": header claims ", n_tensors,
              " tensors, more than the ", r.remaining(), " bytes left can describe (truncated?)");
  f.tensors_.reserve(size_t(n_tensors));
  std::set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GGUFTensorInfo ti;
    ti.name = r.str("tensor name");
    LMKIT_CHECK(names.insert(ti.name).second, name, ": tensor '", ti.name, "' appears twice");
    uint32_t nd = r.get<uint32_t>("tensor dims");
    LMKIT_CHECK(nd >= 1 && nd <= uint32_t(kMaxDims), name, ": tensor '", ti.name, "' has ", nd,
                " dimensions (lmkit supports 1 to ", kMaxDims, ")");
    uint64_t ne[kMaxDims];
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      ne[d] = r.get<uint64_t>("tensor shape");
      LMKIT_CHECK(ne[d] > 0 && ne[d] <= (uint64_t(1) << 40), name, ": tensor '", ti.name,
                  "' has an absurd dimension ", ne[d]);
      LMKIT_CHECK(numel <= (uint64_t(1) << 48) / ne[d], name, ": tensor '", ti.name,
                  "' is absurdly large");
      numel *= ne[d];
    }
    ti.shape.ndim = int(nd);
    for (uint32_t d = 0; d < nd; ++d) ti.shape.dims[nd - 1 - d] = int64_t(ne[d]);
    ti.ggml_type = r.get<uint32_t>("tensor type");
    ti.offset = r.get<uint64_t>("tensor offset");
    const GGMLTypeInfo *gi = ggml_type_info(ti.ggml_type);
    LMKIT_CHECK(gi != nullptr, name, ": tensor '", ti.name, "' has unknown type ", ti.ggml_type);
    LMKIT_CHECK(ne[0] % uint64_t(gi->block) == 0, name, ": tensor '", ti.name, "' row of ", ne[0],
                " is not a multiple of the ", gi->name, " block size ", gi->block);
    ti.nbytes = size_t(numel / uint64_t(gi->block)) * gi->block_bytes;
    LMKIT_CHECK(ti.offset % f.alignment_ == 0, name, ": tensor '", ti.name, "' data offset ",
                ti.offset, " is not aligned to ", f.alignment_);
    f.tensors_.push_back(std::move(ti));
  }
  f.data_offset_ = (r.offset() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (const auto &ti : f.tensors_) {
    LMKIT_CHECK(f.data_offset_ <= size && ti.offset <= size - f.data_offset_ &&
                    ti.nbytes <= size - f.data_offset_ - ti.offset,
                name, ": tensor '", ti.name, "' data lies past the end of the file (truncated?)");
  }
  return f;
}

const GGUFValue *GGUFFile::find(const std::string &key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

std::string GGUFFile::get_str(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->type == GGUFType::STRING, path_, ": metadata '", key, "' is not a string");
  return v->s;
}
std::string GGUFFile::get_str(const std::string &key, const std::string &def) const {
  return has(key) ? get_str(key) : def;
}
int64_t GGUFFile::get_int(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->is_int(), path_, ": metadata '", key, "' is not an integer");
  return v->i;
}
int64_t GGUFFile::get_int(const std::string &key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}
double GGUFFile::get_float(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->is_float() || v->is_int(), path_, ": metadata '", key, "' is not a number");
  return v->f;
}
double GGUFFile::get_float(const std::string &key, double def) const {
  return has(key) ? get_float(key) : def;
}
bool GGUFFile::get_bool(const std::string &key, bool def) const {
  const GGUFValue *v = find(key);
  if (!v) return def;
  LMKIT_CHECK(v->is_int(), path_, ": metadata '", key, "' is not a bool");
  return v->i != 0;
}
const std::vector<std::string> &GGUFFile::get_str_array(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->is_array() && v->elem == GGUFType::STRING, path_, ": metadata '", key,
              "' is not an array of strings");
  return v->strs;
}
std::vector<float> GGUFFile::get_f32_array(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->is_array() && v->elem != GGUFType::STRING, path_, ": metadata '", key,
              "' is not a numeric array");
  return std::vector<float>(v->nums.begin(), v->nums.end());
}
std::vector<int32_t> GGUFFile::get_i32_array(const std::string &key) const {
  const GGUFValue *v = find(key);
  LMKIT_CHECK(v, path_, ": missing metadata '", key, "'");
  LMKIT_CHECK(v->is_array() && v->elem != GGUFType::STRING, path_, ": metadata '", key,
              "' is not a numeric array");
  std::vector<int32_t> out(v->nums.size());
  for (size_t k = 0; k < out.size(); ++k) {
    // Checked before the cast: converting an out-of-range (or NaN) double to int is undefined.
    const double x = v->nums[k];
    LMKIT_CHECK(x >= double(std::numeric_limits<int32_t>::min()) &&
                    x <= double(std::numeric_limits<int32_t>::max()),
                path_, ": metadata '", key, "' element ", k, " (", x, ") does not fit in int32");
    out[k] = int32_t(x);
  }
  return out;
}

const GGUFTensorInfo *GGUFFile::find_tensor(const std::string &name) const {
  for (const auto &t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

Tensor GGUFFile::tensor(const GGUFTensorInfo &t) const {
  // DType uses ggml's numbering, so a type lmkit knows maps by value; the block formats come back
  // as raw views in their GGUF layout (kernels/quant.h reads them; kernels::pack_weight re-packs).
  DType dt;
  switch (t.ggml_type) {
    case 0:
    case 1:
    case 30:
    case 2:
    case 3:
    case 6:
    case 7:
    case 8:
    case 9:
    case 12:
    case 13:
    case 14:
    case 15:
      dt = DType(t.ggml_type);
      break;
    default:
      fail(path_, ": tensor '", t.name, "' has type ", ggml_type_name(t.ggml_type),
           ", which lmkit cannot load yet (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, "
           "q8_0, q8_1, q4_K, q5_K, q6_K, q8_K)");
  }
  const uint8_t *p = base_ + data_offset_ + t.offset;
  return Tensor::view_of(const_cast<uint8_t *>(p), dt, t.shape, map_);
}

// ---- writer ----

void GGUFWriter::set(const std::string &key, const GGUFValue &v) {
  for (auto &kv : kv_)
    if (kv.first == key) {
      kv.second = v;
      return;
    }
  kv_.emplace_back(key, v);
}
void GGUFWriter::set_str(const std::string &key, const std::string &v) {
  GGUFValue g;
  g.type = GGUFType::STRING;
  g.s = v;
  set(key, g);
}
void GGUFWriter::set_u32(const std::string &key, uint32_t v) {
  GGUFValue g;
  g.type = GGUFType::U32;
  g.i = v;
  set(key, g);
}
void GGUFWriter::set_i32(const std::string &key, int32_t v) {
  GGUFValue g;
  g.type = GGUFType::I32;
  g.i = v;
  set(key, g);
}
void GGUFWriter::set_f32(const std::string &key, float v) {
  GGUFValue g;
  g.type = GGUFType::F32;
  g.f = v;
  set(key, g);
}
void GGUFWriter::set_bool(const std::string &key, bool v) {
  GGUFValue g;
  g.type = GGUFType::BOOL;
  g.i = v;
  set(key, g);
}
void GGUFWriter::set_str_array(const std::string &key, const std::vector<std::string> &v) {
  GGUFValue g;
  g.type = GGUFType::ARRAY;
  g.elem = GGUFType::STRING;
  g.strs = v;
  set(key, g);
}
void GGUFWriter::set_f32_array(const std::string &key, const std::vector<float> &v) {
  GGUFValue g;
  g.type = GGUFType::ARRAY;
  g.elem = GGUFType::F32;
  g.nums.assign(v.begin(), v.end());
  set(key, g);
}
void GGUFWriter::set_i32_array(const std::string &key, const std::vector<int32_t> &v) {
  GGUFValue g;
  g.type = GGUFType::ARRAY;
  g.elem = GGUFType::I32;
  g.nums.assign(v.begin(), v.end());
  set(key, g);
}

void GGUFWriter::add_tensor(const std::string &name, const Tensor &t) {
  LMKIT_CHECK(t.is_contiguous(), "GGUF writer: tensor '", name, "' is not contiguous");
  const DType dt = t.dtype();
  // GGUF-layout types only: a re-packed kernel layout (kernels::pack_weight) is not a file format.
  const bool known = dt == DType::F32 || dt == DType::F16 || dt == DType::BF16 ||
                     (dtype_is_quantized(dt) && ggml_type_info(uint32_t(dt)) != nullptr);
  LMKIT_CHECK(known, "GGUF writer: tensor '", name, "' has dtype ", dtype_name(dt),
              ", which is not a GGUF tensor type (f32, f16, bf16, q4_0, ..., q8_K)");
  tensors_.emplace_back(name, t);
}

namespace {
// The integer to write for element d of a numeric array: only integer types need one, and casting
// a double outside int64's range (a float array's 1e30) would be undefined.
int64_t array_int(GGUFType elem, double d) {
  if (elem == GGUFType::F32 || elem == GGUFType::F64 || !std::isfinite(d)) return 0;
  if (d >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
  if (d <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return int64_t(d);
}

struct ByteSink {
  AtomicFile &f;
  template <typename T>
  void put(T v) {
    f.write(&v, sizeof v);
  }
  void str(const std::string &s) {
    put<uint64_t>(s.size());
    f.write(s.data(), s.size());
  }
  void scalar(GGUFType t, int64_t i, double d) {
    switch (t) {
      case GGUFType::U8:
        put<uint8_t>(uint8_t(i));
        break;
      case GGUFType::I8:
        put<int8_t>(int8_t(i));
        break;
      case GGUFType::BOOL:
        put<uint8_t>(i != 0);
        break;
      case GGUFType::U16:
        put<uint16_t>(uint16_t(i));
        break;
      case GGUFType::I16:
        put<int16_t>(int16_t(i));
        break;
      case GGUFType::U32:
        put<uint32_t>(uint32_t(i));
        break;
      case GGUFType::I32:
        put<int32_t>(int32_t(i));
        break;
      case GGUFType::U64:
        put<uint64_t>(uint64_t(i));
        break;
      case GGUFType::I64:
        put<int64_t>(i);
        break;
      case GGUFType::F32:
        put<float>(float(d));
        break;
      case GGUFType::F64:
        put<double>(d);
        break;
      default:
        fail("GGUF writer: bad scalar type ", uint32_t(t));
    }
  }
};
}  // namespace

void GGUFWriter::write(const std::string &path, size_t alignment) const {
  AtomicFile f(path);
  ByteSink out{f};
  f.write("GGUF", 4);
  out.put<uint32_t>(3);
  out.put<uint64_t>(tensors_.size());
  bool has_align = false;
  for (auto &kv : kv_) has_align |= kv.first == "general.alignment";
  out.put<uint64_t>(kv_.size() + (alignment != 32 && !has_align ? 1 : 0));
  for (const auto &[key, v] : kv_) {
    out.str(key);
    out.put<uint32_t>(uint32_t(v.type));
    if (v.type == GGUFType::STRING) {
      out.str(v.s);
    } else if (v.type == GGUFType::ARRAY) {
      out.put<uint32_t>(uint32_t(v.elem));
      if (v.elem == GGUFType::STRING) {
        out.put<uint64_t>(v.strs.size());
        for (const auto &s : v.strs) out.str(s);
      } else {
        out.put<uint64_t>(v.nums.size());
        for (double d : v.nums) out.scalar(v.elem, array_int(v.elem, d), d);
      }
    } else {
      out.scalar(v.type, v.i, v.f);
    }
  }
  if (alignment != 32 && !has_align) {
    out.str("general.alignment");
    out.put<uint32_t>(uint32_t(GGUFType::U32));
    out.put<uint32_t>(uint32_t(alignment));
  }
  uint64_t off = 0;
  for (const auto &[name, t] : tensors_) {
    out.str(name);
    out.put<uint32_t>(uint32_t(t.ndim()));
    for (int d = t.ndim() - 1; d >= 0; --d) out.put<uint64_t>(uint64_t(t.dim(d)));
    out.put<uint32_t>(uint32_t(t.dtype()));
    out.put<uint64_t>(off);
    off += (t.nbytes() + alignment - 1) / alignment * alignment;
  }
  f.pad_to(alignment);
  for (const auto &[name, t] : tensors_) {
    f.write(t.data(), t.nbytes());
    f.pad_to(alignment);
  }
  f.commit();
}

}  // namespace lmkit
