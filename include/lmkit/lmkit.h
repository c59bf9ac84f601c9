// lmkit public API: everything a program needs to load a model, run it, sample from it and
// listen to its activations. Link the CMake target `lmkit::lmkit`.
//
// A five-minute tour
// ------------------
//   #include <lmkit/lmkit.h>
//
//   // 1. Load: a Hugging Face folder, a .gguf file or a llama2.c .bin (memory-mapped).
//   lmkit::LoadedModel lm = lmkit::load_model("stories260K.bin", "tok512.bin");
//
//   // 2. A session holds one conversation's KV cache; the model (weights) can be shared.
//   auto pool = std::make_shared<lmkit::ThreadPool>(2);
//   lmkit::Session session(lm.model, pool, /*n_ctx=*/512);
//
//   // 3. Generate: prefill, sample, stop, stream.
//   lmkit::GenerateOptions opt;
//   opt.max_tokens = 64;
//   opt.sampling.temperature = 0;  // greedy
//   std::vector<int32_t> prompt = lm.tokenizer->encode("Once upon a time");
//   lmkit::generate(session, *lm.tokenizer, prompt, opt,
//                   [](std::string_view piece) { std::cout << piece; return true; });
//
//   // 4. Look inside: hooks are named where values are produced (TransformerLens names).
//   session.hooks().add("blocks.0.attn.hook_pattern", [](const lmkit::HookEvent &ev) {
//     // ev.value: (n_head, n_query, n_key) attention probabilities; writes patch the run.
//   });
//   const float *logits = session.eval(prompt);  // (n_vocab) after the last token
//
// Lower layers (kernels, file formats, tokenizers) are usable on their own; see docs/DESIGN.md.
#pragma once

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/hooks.h"
#include "model/loader.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
