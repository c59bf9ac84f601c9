// Session bookkeeping around Model::forward.
#include "runtime/session.h"

#include "core/error.h"

namespace lmkit {

namespace {
int64_t pick_ctx(const Model &m, int64_t n_ctx) {
  return n_ctx > 0 ? n_ctx : m.config().n_ctx_train;
}
}  // namespace

Session::Session(std::shared_ptr<const Model> model, std::shared_ptr<ThreadPool> pool,
                 int64_t n_ctx, int64_t n_batch)
    : model_(std::move(model)),
      pool_(std::move(pool)),
      state_(*model_, pick_ctx(*model_, n_ctx), n_batch),
      logits_(size_t(model_->config().n_vocab)) {}

const float *Session::eval(std::span<const int32_t> tokens) {
  LMKIT_CHECK(!tokens.empty(), "eval: no tokens");
  LMKIT_CHECK(n_past() + int64_t(tokens.size()) <= n_ctx(), "context full: ", n_past(), " + ",
              tokens.size(), " tokens exceed the context size ", n_ctx());
  model_->forward(state_, tokens, n_past(), logits_.data(), false, *pool_,
                  hooks_.empty() ? nullptr : &hooks_);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  n_last_eval_ = int64_t(tokens.size());
  return logits_.data();
}

const float *Session::eval_all(std::span<const int32_t> tokens) {
  LMKIT_CHECK(!tokens.empty(), "eval: no tokens");
  LMKIT_CHECK(n_past() + int64_t(tokens.size()) <= n_ctx(), "context full: ", n_past(), " + ",
              tokens.size(), " tokens exceed the context size ", n_ctx());
  const int64_t V = model_->config().n_vocab;
  all_logits_.resize(tokens.size() * size_t(V));
  model_->forward(state_, tokens, n_past(), all_logits_.data(), true, *pool_,
                  hooks_.empty() ? nullptr : &hooks_);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  n_last_eval_ = int64_t(tokens.size());
  std::copy(all_logits_.end() - V, all_logits_.end(), logits_.begin());
  return all_logits_.data();
}

void Session::rewind(int64_t n) {
  LMKIT_CHECK(n >= 0 && n <= n_past(), "rewind to ", n, " of ", n_past(), " tokens");
  tokens_.resize(size_t(n));
}

const float *Session::sync(std::span<const int32_t> tokens) {
  LMKIT_CHECK(!tokens.empty(), "sync: no tokens");
  size_t common = 0;
  while (common < tokens_.size() && common < tokens.size() && tokens_[common] == tokens[common])
    ++common;
  if (common == tokens.size()) --common;  // re-run the last token to get its logits
  rewind(int64_t(common));
  return eval(tokens.subspan(common));
}

}  // namespace lmkit
