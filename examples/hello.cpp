// hello: the smallest lmkit program: load a model and greedily continue a prompt.
// Usage: hello MODEL [TOKENIZER] [PROMPT]
#include <iostream>

#include <lmkit/lmkit.h>

int main(int argc, char **argv) try {
  if (argc < 2) {
    std::cerr << "usage: hello MODEL [TOKENIZER] [PROMPT]\n";
    return 1;
  }
  lmkit::LoadedModel lm = lmkit::load_model(argv[1], argc > 2 ? argv[2] : "");
  auto pool = std::make_shared<lmkit::ThreadPool>(1);
  lmkit::Session session(lm.model, pool, 256);
  lmkit::GenerateOptions opt;
  opt.max_tokens = 64;
  opt.sampling.temperature = 0;
  auto prompt = lm.tokenizer->encode(argc > 3 ? argv[3] : "Once upon a time");
  std::cout << lm.tokenizer->decode(prompt);
  lmkit::generate(session, *lm.tokenizer, prompt, opt, [](std::string_view s) {
    std::cout << s << std::flush;
    return true;
  });
  std::cout << "\n";
} catch (const lmkit::Error &e) {
  std::cerr << "hello: " << e.what() << "\n";
  return 1;
}
