// GGUF files with block-quantized tensors: GGUFWriter writes every GGUF block type lmkit knows and
// GGUFFile reads the same bytes back as a tensor of that dtype. Not the formats' meaning: the
// bytes are opaque here (tests/kernels/test_quant_format.cpp checks their values).
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "test_util.h"

namespace lmkit::test {
namespace {

TEST(GGUFQuant, BlockTypesRoundTripThroughWriterAndReader) {
  struct Case {
    DType t;
    Shape shape;
  };
  const Case cases[] = {{DType::Q4_0, {3, 64}},  {DType::Q4_1, {2, 32}},    {DType::Q5_0, {5, 96}},
                        {DType::Q5_1, {1, 32}},  {DType::Q8_0, {4, 2, 64}}, {DType::Q8_1, {2, 32}},
                        {DType::Q4_K, {3, 512}}, {DType::Q5_K, {2, 256}},   {DType::Q6_K, {7, 256}},
                        {DType::Q8_K, {1, 256}}};
  std::vector<Tensor> src;
  GGUFWriter w;
  w.set_str("general.architecture", "llama");
  uint64_t s = 7;
  for (const Case &c : cases) {
    Tensor t = Tensor::zeros(c.t, c.shape);
    for (size_t i = 0; i < t.nbytes(); ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      t.data_as<uint8_t>()[i] = uint8_t(s >> 56);
    }
    w.add_tensor(std::string("t.") + std::string(dtype_name(c.t)), t);
    src.push_back(t);
  }
  TempDir dir("gguf_quant");
  w.write(dir / "q.gguf");
  const GGUFFile f = GGUFFile::open(dir / "q.gguf");
  ASSERT_EQ(f.tensors().size(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    const std::string name = std::string("t.") + std::string(dtype_name(cases[i].t));
    const GGUFTensorInfo *ti = f.find_tensor(name);
    ASSERT_NE(ti, nullptr) << name;
    EXPECT_EQ(ti->ggml_type, uint32_t(cases[i].t)) << name;
    EXPECT_EQ(ti->nbytes, src[i].nbytes()) << name;
    EXPECT_EQ(ggml_type_name(ti->ggml_type), dtype_name(cases[i].t));
    const Tensor back = f.tensor(*ti);
    EXPECT_EQ(back.dtype(), cases[i].t) << name;
    EXPECT_EQ(back.shape(), cases[i].shape) << name;
    EXPECT_EQ(back.nbytes(), src[i].nbytes()) << name;
    EXPECT_EQ(0, std::memcmp(back.data(), src[i].data(), src[i].nbytes())) << name;
    // Rows of a block type are whole blocks: the row stride is the GGUF row size.
    EXPECT_EQ(back.stride_bytes(back.ndim() - 2), dtype_row_bytes(cases[i].t, back.dim(-1)));
  }
}

TEST(GGUFQuant, WriterRejectsANonGGUFDtypeAndReaderAnUnsupportedBlockType) {
  GGUFWriter w;
  EXPECT_THROW(w.add_tensor("x", Tensor::zeros(DType::I64, {4})), Error);
}

}  // namespace
}  // namespace lmkit::test
