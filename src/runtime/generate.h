// generate: the generation state machine: prefill the prompt, then sample, check stop conditions
// (end-of-generation token, stop strings, token budget) and stream text as it completes.
// Not a scheduler for many sequences (the server's batch scheduler will drive sessions itself).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace lmkit {

struct GenerateOptions {
  int64_t max_tokens = 128;  // new tokens at most
  SamplerParams sampling;
  std::vector<std::string> stop;  // stop strings: generation ends before the first match
  bool ignore_eos = false;        // keep going past end-of-generation tokens
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (an end token that stopped it is included)
  std::string text;             // generated text, cut before a stop string
  std::string finish_reason;    // "stop" (end token or stop string) or "length"
  int64_t n_prompt = 0;         // tokens evaluated for the prompt (after prefix reuse)
  double prefill_s = 0, decode_s = 0;
  int64_t n_decode = 0;  // forward passes after the prompt
  double prefill_tok_s() const { return prefill_s > 0 ? double(n_prompt) / prefill_s : 0; }
  double decode_tok_s() const { return decode_s > 0 ? double(n_decode) / decode_s : 0; }
};

// The text side of one generation, shared by generate() and the server's batch scheduler: fed the
// sampled tokens one at a time, it decodes them as a continuation of the prompt, holds back text
// that may begin a stop string, and says when generation ends (end-of-generation token, stop
// string, or the token budget).
class Continuation {
 public:
  Continuation(const Tokenizer &tok, std::span<const int32_t> prompt, const GenerateOptions &opt);
  // Takes the next sampled token; returns the text it releases. Check done() afterwards.
  std::string push(int32_t t);
  // Ends the generation early (client gone, caller's sink refused): finish_reason "stop".
  void stop() { finish("stop"); }
  bool done() const { return !finish_reason_.empty(); }
  // "stop" or "length" once done(), "" before.
  const std::string &finish_reason() const { return finish_reason_; }
  int64_t n_generated() const { return n_generated_; }

 private:
  std::string finish(const char *reason);
  const Tokenizer &tok_;
  const GenerateOptions &opt_;
  StreamDecoder dec_;
  std::string pending_;  // decoded but held back (may be the start of a stop string)
  std::string finish_reason_;
  int64_t n_generated_ = 0;
};

// Streams text pieces as they complete; return false to stop early (finish_reason "stop").
using TextSink = std::function<bool(std::string_view)>;

// Continues the session after `prompt` (the session is synced to it first, reusing any common
// prefix already in its cache). Text is decoded as a continuation of the prompt, so a piece's
// leading space is kept.
GenerateResult generate(Session &s, const Tokenizer &tok, std::span<const int32_t> prompt,
                        const GenerateOptions &opt, const TextSink &sink = {});

// Finds where a stop string would begin in `text`: the index of the first complete match, or of
// the longest suffix that is a prefix of some stop string (text from there must be held back).
// Returns {index, complete_match}.
std::pair<size_t, bool> stop_scan(std::string_view text, const std::vector<std::string> &stop);

}  // namespace lmkit
