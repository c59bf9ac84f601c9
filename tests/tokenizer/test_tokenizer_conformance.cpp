// Conformance: every vector of ../shared/tokenizers (llama.cpp's test set, ids from Hugging Face
// tokenizers) through the GGUF vocabularies. Not the tokenizer.json path: see test_tokenizer_hf.
#include "test_tokenizer_util.h"

namespace lmkit::test {
namespace {

void check_gguf(const std::string &name, TokenizerKind kind) {
  GGUFFile f = GGUFFile::open(vocab_path(name));
  auto tok = tokenizer_from_gguf(f);
  EXPECT_EQ(tok->kind(), kind);
  auto cases = load_vocab_cases(name);
  ASSERT_EQ(cases.size(), 46u);
  std::string report = conformance_report(*tok, cases);
  EXPECT_TRUE(report.empty()) << name << " failures:\n" << report;
}

TEST(TokenizerConformance, Gpt2) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("gpt-2", TokenizerKind::ByteLevelBPE);
}
TEST(TokenizerConformance, Falcon) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("falcon", TokenizerKind::ByteLevelBPE);
}
TEST(TokenizerConformance, Starcoder) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("starcoder", TokenizerKind::ByteLevelBPE);
}
TEST(TokenizerConformance, DeepseekLlm) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("deepseek-llm", TokenizerKind::ByteLevelBPE);
}
TEST(TokenizerConformance, LlamaSpm) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("llama-spm", TokenizerKind::SentencePieceBPE);
}
TEST(TokenizerConformance, BertBge) {
  LMKIT_REQUIRE_SHARED();
  check_gguf("bert-bge", TokenizerKind::WordPiece);
}

}  // namespace
}  // namespace lmkit::test
