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

GenerateResult generate(Session &s, const Tokenizer &tok, std::span<const int32_t> prompt,
                        const GenerateOptions &opt, const TextSink &sink) {
  LMKIT_CHECK(!prompt.empty(), "generate: the prompt has no tokens");
  LMKIT_CHECK(opt.max_tokens >= 0, "generate: max tokens must be >= 0");
  LMKIT_CHECK(int64_t(prompt.size()) + opt.max_tokens <= s.n_ctx(), "the prompt (", prompt.size(),
              " tokens) plus ", opt.max_tokens, " new tokens exceed the context of ", s.n_ctx());
  GenerateResult r;
  Sampler sampler(opt.sampling);
  const int64_t V = s.model().config().n_vocab;

  // Prime the stream decoder with the prompt so the continuation decodes in context.
  StreamDecoder dec(tok);
  for (int32_t t : prompt) dec.feed(t);

  double t0 = now_seconds();
  const float *logits = s.sync(prompt);
  r.n_prompt = s.n_last_eval();
  double t1 = now_seconds();
  r.prefill_s = t1 - t0;

  std::string pending;  // decoded but not yet emitted (may be the start of a stop string)
  bool stopped = false;
  auto emit = [&](std::string_view piece) {
    r.text.append(piece);
    if (sink && !sink(piece)) stopped = true;
  };
  r.finish_reason = "length";
  for (int64_t i = 0; i < opt.max_tokens && !stopped; ++i) {
    int32_t t = sampler.sample(logits, V, s.tokens());
    r.tokens.push_back(t);
    if (!opt.ignore_eos && tok.is_end_of_generation(t)) {
      r.finish_reason = "stop";
      break;
    }
    pending += dec.feed(t);
    auto [cut, match] = stop_scan(pending, opt.stop);
    emit(std::string_view(pending).substr(0, cut));
    if (match) {
      pending.clear();
      r.finish_reason = "stop";
      break;
    }
    pending.erase(0, cut);
    if (i + 1 == opt.max_tokens || stopped) break;
    logits = s.eval(std::span<const int32_t>(&t, 1));
    ++r.n_decode;
  }
  if (stopped) r.finish_reason = "stop";
  if (r.finish_reason == "length") {
    pending += dec.flush();
    auto [cut, match] = stop_scan(pending, opt.stop);
    emit(std::string_view(pending).substr(0, match ? cut : pending.size()));
  }
  r.decode_s = now_seconds() - t1;
  return r;
}

}  // namespace lmkit
