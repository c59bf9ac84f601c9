// Golden output from real pretrained weights: llama2.c's stories260K must reproduce, token for
// token, what llama2.c's own run.c printed (../shared/models/stories260K/ref_greedy_*).
#include <fstream>
#include <sstream>

#include "model/loader.h"
#include "runtime/generate.h"
#include "test_util.h"

namespace lmkit {
namespace {

std::string stories_dir() {
  return test::shared_dir() + "/models/stories260K";
}

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int32_t> ref_ids() {
  std::istringstream in(slurp(stories_dir() + "/ref_greedy_once_upon_a_time_n256.ids"));
  std::vector<int32_t> ids;
  for (int32_t v; in >> v;) ids.push_back(v);
  return ids;
}

TEST(Golden, Stories260KGreedyMatchesLlama2c) {
  LMKIT_REQUIRE_SHARED();
  LoadedModel lm = load_model(stories_dir() + "/stories260K.bin", stories_dir() + "/tok512.bin");
  ASSERT_NE(lm.tokenizer, nullptr);
  const std::vector<int32_t> ref = ref_ids();
  // llama2.c's -n 256 counts positions: the file holds BOS, then the token chosen at each of the
  // 256 positions (the 4 prompt tokens and 252 sampled ones).
  ASSERT_EQ(ref.size(), 257u);
  std::vector<int32_t> prompt = lm.tokenizer->encode("Once upon a time");
  ASSERT_EQ(prompt, std::vector<int32_t>(ref.begin(), ref.begin() + 5));

  for (int threads : {1, 2}) {
    auto pool = std::make_shared<ThreadPool>(threads);
    Session s(lm.model, pool, 512);
    GenerateOptions opt;
    opt.max_tokens = 256;  // lmkit's -n counts new tokens, like llama.cpp
    opt.sampling.temperature = 0;
    GenerateResult r = generate(s, *lm.tokenizer, prompt, opt);
    ASSERT_GE(r.tokens.size(), ref.size() - prompt.size());
    std::vector<int32_t> overlap(r.tokens.begin(),
                                 r.tokens.begin() + std::ptrdiff_t(ref.size() - prompt.size()));
    EXPECT_EQ(overlap, std::vector<int32_t>(ref.begin() + 5, ref.end())) << threads;

    // The text run.c printed is the decoded prompt and continuation, plus a final newline.
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), overlap.begin(), overlap.end());
    EXPECT_EQ(lm.tokenizer->decode(all) + "\n",
              slurp(stories_dir() + "/ref_greedy_once_upon_a_time_n256.txt"));
  }
}

}  // namespace
}  // namespace lmkit
