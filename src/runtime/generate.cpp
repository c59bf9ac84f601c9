// Prefill, then sample/eval one token at a time until a stop condition.
#include "runtime/generate.h"

#include "core/error.h"
#include "core/timer.h"

namespace lmkit {

std::pair<size_t, bool> stop_scan(std::string_view text, const std::vector<std::string> &stop) {
  size_t first = std::string_view::npos;
  for (const auto &s : stop) {
    if (s.empty()) continue;
    size_t p = text.find(s);
    if (p < first) first = p;
  }
  if (first != std::string_view::npos) return {first, true};
  size_t hold = text.size();
  for (const auto &s : stop) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > 0; --len) {
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = std::min(hold, text.size() - len);
        break;
      }
    }
  }
  return {hold, false};
}

Continuation::Continuation(const Tokenizer &tok, std::span<const int32_t> prompt,
                           const GenerateOptions &opt)
    : tok_(tok), opt_(opt), dec_(tok) {
  // Prime the stream decoder with the prompt so the continuation decodes in context.
  for (int32_t t : prompt) dec_.feed(t);
  if (opt.max_tokens == 0) finish_reason_ = "length";
}

std::string Continuation::finish(const char *reason) {
  finish_reason_ = reason;
  if (finish_reason_ != "length") return {};
  // Out of budget: whatever is held back is released, unless it completes a stop string.
  pending_ += dec_.flush();
  auto [cut, match] = stop_scan(pending_, opt_.stop);
  return pending_.substr(0, match ? cut : pending_.size());
}

std::string Continuation::push(int32_t t) {
  LMKIT_CHECK(!done(), "generation already finished");
  ++n_generated_;
  if (!opt_.ignore_eos && tok_.is_end_of_generation(t)) return finish("stop");
  pending_ += dec_.feed(t);
  auto [cut, match] = stop_scan(pending_, opt_.stop);
  std::string out = pending_.substr(0, cut);
  if (match) {
    finish("stop");
    return out;
  }
  pending_.erase(0, cut);
  if (n_generated_ == opt_.max_tokens) out += finish("length");
  return out;
}

GenerateResult generate(Session &s, const Tokenizer &tok, std::span<const int32_t> prompt,
                        const GenerateOptions &opt, const TextSink &sink) {
  LMKIT_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  LMKIT_CHECK(opt.max_tokens >= 0, "generate: max tokens must be >= 0");
  LMKIT_CHECK(int64_t(prompt.size()) + opt.max_tokens <= s.n_ctx(), "the prompt (", prompt.size(),
              " tokens) plus ", opt.max_tokens, " new tokens exceed the context of ", s.n_ctx());
  GenerateResult r;
  Sampler sampler(opt.sampling);
  const int64_t V = s.model().config().n_vocab;
  Continuation cont(tok, prompt, opt);

  double t0 = now_seconds();
  const float *logits = s.sync(prompt);
  r.n_prompt = s.n_last_eval();
  double t1 = now_seconds();
  r.prefill_s = t1 - t0;

  while (!cont.done()) {
    int32_t t = sampler.sample(logits, V, s.tokens());
    r.tokens.push_back(t);
    std::string piece = cont.push(t);
    r.text += piece;
    if (sink && !sink(piece)) cont.stop();
    if (cont.done()) break;
    logits = s.eval(std::span<const int32_t>(&t, 1));
    ++r.n_decode;
  }
  r.finish_reason = cont.finish_reason();
  r.decode_s = now_seconds() - t1;
  return r;
}

}  // namespace lmkit
