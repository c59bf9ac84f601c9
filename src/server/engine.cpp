// The continuous-batching worker: admit jobs into free KV slots, build one batch per step, run
// it, sample per sequence, stream events back to the requests' threads.
#include "server/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/timer.h"
#include "runtime/sampler.h"

namespace lmkit::serve {

// ---- Job -------------------------------------------------------------------------------------

void Job::push(Event e) {
  {
    std::lock_guard lk(mu_);
    final_pushed_ = final_pushed_ || e.final;
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

bool Job::wait(std::vector<Event> &out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (final_taken_) return false;
  cv_.wait_for(lk, timeout, [&] { return !events_.empty(); });
  while (!events_.empty()) {
    final_taken_ = final_taken_ || events_.front().final;
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

// ---- per-sequence state -----------------------------------------------------------------------

struct Engine::Seq {
  std::shared_ptr<Job> job;
  int32_t slot = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens (the sampler's history)
  int64_t n_prompt = 0;
  int64_t n_done = 0;  // tokens whose K/V are in the slot
  int32_t next = -1;   // sampled, not yet evaluated (decode phase when >= 0)
  Sampler sampler;
  Continuation cont;
  bool first_token = true;
  std::vector<double> emb_sum;
  std::vector<TokenInfo> prompt_info;

  Seq(std::shared_ptr<Job> j, int32_t s, const Tokenizer &tok)
      : job(std::move(j)),
        slot(s),
        tokens(job->spec_.prompt),
        n_prompt(int64_t(tokens.size())),
        sampler(job->spec_.gen.sampling),
        cont(tok, job->spec_.prompt, job->spec_.gen) {}
  const JobSpec &spec() const { return job->spec_; }
};

namespace {

// log-softmax of one logits row at `id`, and the `top` most likely tokens (best first; ties by id).
TokenInfo token_info(const float *x, int64_t V, int32_t id, int top) {
  float mx = x[0];
  for (int64_t i = 1; i < V; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i] - mx));
  const double lse = double(mx) + std::log(sum);
  TokenInfo info{id, float(double(x[id]) - lse), {}};
  if (top > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    const size_t k = std::min(size_t(top), idx.size());
    std::partial_sort(idx.begin(), idx.begin() + std::ptrdiff_t(k), idx.end(),
                      [&](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    for (size_t i = 0; i < k; ++i) info.top.push_back({idx[i], float(double(x[idx[i]]) - lse)});
  }
  return info;
}

Event cancelled_event() {
  Event e;
  e.final = true;
  e.finish_reason = "cancelled";
  return e;
}

int64_t common_prefix(const std::vector<int32_t> &a, const std::vector<int32_t> &b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return int64_t(n);
}

}  // namespace

// ---- Engine ----------------------------------------------------------------------------------

Engine::Engine(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tok,
               std::shared_ptr<ThreadPool> pool, EngineOptions opt)
    : model_(std::move(model)),
      tok_(std::move(tok)),
      pool_(std::move(pool)),
      opt_(opt),
      n_ctx_(opt.n_ctx > 0 ? opt.n_ctx : model_->config().n_ctx_train),
      cache_(model_->config(), opt.n_slots, n_ctx_),
      rope_(*model_, n_ctx_),
      slot_tokens_(size_t(opt.n_slots)) {
  LMKIT_CHECK(opt.n_slots >= 1, "the number of parallel sequences must be >= 1, got ", opt.n_slots);
  LMKIT_CHECK(opt.n_batch >= opt.n_slots, "the batch (", opt.n_batch,
              " rows) must hold at least one row per parallel sequence (", opt.n_slots, ")");
  LMKIT_CHECK(n_ctx_ >= 2, "the context must hold at least 2 tokens, got ", n_ctx_);
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::shared_ptr<Job> Engine::submit(JobSpec spec) {
  LMKIT_CHECK(!spec.prompt.empty(), "the prompt has no tokens");
  const int64_t n = int64_t(spec.prompt.size());
  const int64_t budget = spec.embed ? 0 : spec.gen.max_tokens;
  LMKIT_CHECK(budget >= 0, "max_tokens must be >= 0");
  LMKIT_CHECK(n + budget <= n_ctx_, "the prompt (", n, " tokens) plus ", budget,
              " new tokens exceed the context of ", n_ctx_, " tokens");
  const int32_t V = int32_t(model_->config().n_vocab);
  for (int32_t t : spec.prompt)
    LMKIT_CHECK(t >= 0 && t < V, "token id ", t, " is outside the vocabulary [0, ", V, ")");
  spec.gen.sampling.validate();
  auto job = std::make_shared<Job>();
  job->spec_ = std::move(spec);
  job->t_submit_ = now_seconds();
  {
    std::lock_guard lk(mu_);
    if (stopping_ || queue_.size() >= opt_.max_queue) return nullptr;
    queue_.push_back(job);
    stats_.queued = queue_.size();
  }
  cv_.notify_all();
  return job;
}

EngineStats Engine::stats() const {
  std::lock_guard lk(mu_);
  EngineStats s = stats_;
  const double now = now_seconds();
  int64_t n = 0;
  for (const auto &[t, k] : recent_)
    if (now - t <= 5.0) n += k;
  s.decode_tok_s = double(n) / 5.0;
  return s;
}

void Engine::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> incoming;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !active_.empty() || !queue_.empty(); });
      if (stopping_) break;
      while (!queue_.empty() && active_.size() + incoming.size() < size_t(opt_.n_slots)) {
        incoming.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued = queue_.size();
    }
    admit(incoming);
    step();
  }
  // Shutting down: nothing more runs; every waiting request gets its final event.
  for (auto &s : active_) finish(*s, "cancelled");
  active_.clear();
  deliver();
  std::lock_guard lk(mu_);
  for (auto &j : queue_) j->push(cancelled_event());
  queue_.clear();
}

void Engine::admit(std::vector<std::shared_ptr<Job>> &incoming) {
  for (auto &job : incoming) {
    if (job->cancelled()) {
      job->push(cancelled_event());
      continue;
    }
    // The free slot whose cached tokens share the longest prefix with this prompt.
    std::vector<bool> used(size_t(opt_.n_slots), false);
    for (const auto &s : active_) used[size_t(s->slot)] = true;
    int32_t best = -1;
    int64_t best_common = -1;
    for (int32_t i = 0; i < opt_.n_slots; ++i) {
      if (used[size_t(i)]) continue;
      const int64_t c = common_prefix(slot_tokens_[size_t(i)], job->spec_.prompt);
      if (c > best_common) best = i, best_common = c;
    }
    auto seq = std::make_unique<Seq>(job, best, *tok_);
    // Embeddings and prompt logprobs need every prompt row; otherwise reuse the prefix, keeping
    // at least one prompt token to run for the next token's logits.
    const bool every_row = seq->spec().embed || seq->spec().prompt_logprobs;
    const int64_t reuse = every_row ? 0 : std::min(best_common, seq->n_prompt - 1);
    seq->n_done = reuse;
    slot_tokens_[size_t(best)].resize(size_t(reuse));
    if (seq->spec().embed) seq->emb_sum.assign(size_t(model_->config().n_embd), 0.0);
    if (!seq->spec().embed && seq->cont.done()) {  // max_tokens 0: nothing to generate
      finish(*seq, seq->cont.finish_reason());
      continue;
    }
    active_.push_back(std::move(seq));
  }
  {
    std::lock_guard lk(mu_);
    stats_.active = active_.size();
  }
  deliver();
}

void Engine::finish(Seq &s, const std::string &reason, const std::string &error) {
  Event e;
  e.final = true;
  e.finish_reason = reason;
  e.error = error;
  e.n_prompt = s.n_prompt;
  e.n_completion = s.cont.n_generated();
  e.prompt_info = std::move(s.prompt_info);
  if (s.spec().embed && reason != "cancelled" && reason != "error") {
    double norm = 0;
    for (double v : s.emb_sum) norm += v * v;
    norm = std::sqrt(norm);
    e.embedding.resize(s.emb_sum.size());
    for (size_t i = 0; i < s.emb_sum.size(); ++i)
      e.embedding[i] = float(norm > 0 ? s.emb_sum[i] / norm : 0.0);
  }
  outbox_.emplace_back(s.job, std::move(e));
  s.next = -2;  // marks the sequence finished (removed after the step)
  std::lock_guard lk(mu_);
  ++stats_.jobs_done;
}

void Engine::record_ttft(double seconds) {
  std::lock_guard lk(mu_);
  size_t b = 0;
  while (b < std::size(EngineStats::kTtftBounds) && seconds > EngineStats::kTtftBounds[b]) ++b;
  for (size_t i = b; i < stats_.ttft_buckets.size(); ++i) ++stats_.ttft_buckets[i];
  stats_.ttft_sum += seconds;
  ++stats_.ttft_count;
}

void Engine::step() {
  for (auto &s : active_)
    if (s->job->cancelled()) finish(*s, "cancelled");
  std::erase_if(active_, [](const auto &s) { return s->next == -2; });
  if (active_.empty()) return deliver();

  // The batch: one row per decoding sequence, then prompt chunks in arrival order.
  std::vector<int32_t> tokens, pos;
  std::vector<SeqRows> seqs;
  struct Part {
    Seq *s;
    int64_t row, n;  // rows [row, row + n) of the batch
  };
  std::vector<Part> parts;
  auto add = [&](Seq &s, std::span<const int32_t> toks) {
    const int64_t row = int64_t(tokens.size()), n = int64_t(toks.size());
    for (int64_t i = 0; i < n; ++i) pos.push_back(int32_t(s.n_done + i));
    tokens.insert(tokens.end(), toks.begin(), toks.end());
    seqs.push_back({row, row + n, s.slot});
    parts.push_back({&s, row, n});
  };
  for (auto &s : active_)
    if (s->next >= 0) add(*s, std::span<const int32_t>(&s->next, 1));
  const int64_t n_decode_rows = int64_t(tokens.size());
  int64_t budget = opt_.n_batch - n_decode_rows;
  for (auto &s : active_) {
    if (s->next >= 0 || budget == 0) continue;
    const int64_t n = std::min(budget, s->n_prompt - s->n_done);
    add(*s, std::span<const int32_t>(s->tokens).subspan(size_t(s->n_done), size_t(n)));
    budget -= n;
  }

  // Rows whose logits are needed: each sequence's last row once its prompt is in, and every
  // prompt row when prompt logprobs were asked for.
  std::vector<int64_t> rows;
  std::vector<int64_t> first_logit(parts.size(), -1);  // index into rows of the part's first
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part &p = parts[i];
    if (p.s->spec().embed) continue;
    const bool complete = p.s->n_done + p.n == p.s->n_prompt || p.s->next >= 0;
    const bool all = p.s->spec().prompt_logprobs && p.s->next < 0;
    if (!complete && !all) continue;
    first_logit[i] = int64_t(rows.size());
    for (int64_t r = all ? p.row : p.row + p.n - 1; r < p.row + p.n; ++r) rows.push_back(r);
  }

  const int64_t V = model_->config().n_vocab;
  int64_t generated = 0;
  try {
    arena_.reset();
    ag::Context ctx(*pool_, arena_);
    Batch b{tokens, pos, seqs};
    ag::Var h = model_->hidden(ctx, b, rope_, &cache_);
    if (!rows.empty()) {
      logits_.resize(rows.size() * size_t(V));
      model_->logits(ctx, h, rows, logits_.data());
    }
    struct Pick {
      Seq *s;
      const float *lg;  // the logits it samples from
      int32_t t = 0;
      TokenInfo info;
    };
    std::vector<Pick> picks;
    for (size_t i = 0; i < parts.size(); ++i) {
      const Part &p = parts[i];
      Seq &s = *p.s;
      const bool decoding = s.next >= 0;
      if (s.spec().embed)
        for (int64_t r = p.row; r < p.row + p.n; ++r)
          for (int64_t c = 0; c < h.cols; ++c) s.emb_sum[size_t(c)] += double(h.row(r)[c]);
      auto &cached = slot_tokens_[size_t(s.slot)];
      cached.insert(cached.end(), tokens.begin() + p.row, tokens.begin() + p.row + p.n);
      const int64_t done_before = s.n_done;
      s.n_done += p.n;
      if (s.spec().embed) {
        if (s.n_done == s.n_prompt) finish(s, "stop");
        continue;
      }
      if (first_logit[i] < 0) continue;
      const float *lg = logits_.data() + size_t(first_logit[i]) * size_t(V);
      if (!decoding && s.spec().prompt_logprobs) {
        // Row r predicts the prompt token at position done_before + r + 1.
        const int top = std::max(0, s.spec().top_logprobs);
        for (int64_t r = 0; r < p.n; ++r) {
          const int64_t target = done_before + r + 1;
          if (target < s.n_prompt)
            s.prompt_info.push_back(token_info(lg + r * V, V, s.tokens[size_t(target)], top));
        }
        if (s.n_done < s.n_prompt) continue;
        lg += (p.n - 1) * V;
      }
      picks.push_back({&s, lg, 0, {}});
    }
    // Sampling (a sort over the vocabulary, logprobs) is per sequence: spread it over the pool.
    pool_->parallel_for(int64_t(picks.size()), [&](int64_t k0, int64_t k1, int) {
      for (int64_t k = k0; k < k1; ++k) {
        Pick &pk = picks[size_t(k)];
        Seq &s = *pk.s;
        pk.t = s.sampler.sample(pk.lg, V, s.tokens);
        const int top = s.spec().top_logprobs;
        pk.info = top >= 0 ? token_info(pk.lg, V, pk.t, top) : TokenInfo{pk.t, 0, {}};
      }
    });
    for (Pick &pk : picks) {
      Seq &s = *pk.s;
      Event e;
      e.token = std::move(pk.info);
      e.text = s.cont.push(pk.t);
      s.tokens.push_back(pk.t);
      ++generated;
      if (s.first_token) {
        s.first_token = false;
        record_ttft(now_seconds() - s.job->t_submit_);
      }
      outbox_.emplace_back(s.job, std::move(e));
      if (s.cont.done())
        finish(s, s.cont.finish_reason());
      else
        s.next = pk.t;
    }
  } catch (const std::exception &ex) {
    // A failed forward leaves the slots' caches in an unknown state: drop them and end the batch.
    for (auto &s : active_) {
      slot_tokens_[size_t(s->slot)].clear();
      if (s->next != -2) finish(*s, "error", ex.what());
    }
  }
  std::erase_if(active_, [](const auto &s) { return s->next == -2; });
  std::unique_lock lk(mu_);
  ++stats_.steps;
  stats_.active = active_.size();
  stats_.tokens_generated += uint64_t(generated);
  stats_.tokens_prompt += uint64_t(int64_t(tokens.size()) - n_decode_rows);
  const double now = now_seconds();
  recent_.emplace_back(now, generated);
  while (!recent_.empty() && now - recent_.front().first > 5.0) recent_.pop_front();
  lk.unlock();
  deliver();
}

void Engine::deliver() {
  for (auto &[job, e] : outbox_) job->push(std::move(e));
  outbox_.clear();
}

}  // namespace lmkit::serve
