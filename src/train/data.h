// Training data: text files checked and split into documents, tokenized into binary token shards
// with a train/validation split (data_prepare), and a loader that memory-maps the shards and
// serves batches of random contiguous windows, deterministic by seed and resumable mid-epoch.
// Not a text cleaner or deduplicator: documents are taken as they are.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit {

class MappedFile;

// --- text input ---------------------------------------------------------------------------------

// Checks that `data` is text and returns it, with stray invalid UTF-8 replaced by U+FFFD (the
// count of bytes so replaced goes to *n_repaired). Throws lmkit::Error naming `what` when it is
// empty (or only whitespace), contains a NUL byte, or has more than 10% invalid UTF-8 bytes:
// "corpus.bin: binary data, not text (NUL byte at offset 12)".
std::string text_check(std::string_view data, const std::string &what,
                       int64_t *n_repaired = nullptr);
// Reads a file and text_check()s it; errors name the path.
std::string read_text_file(const std::string &path, int64_t *n_repaired = nullptr);

// Documents are runs of non-blank lines; one or more blank (whitespace-only) lines separate them.
// Appends views into `text` without the separating blank lines and the final line break.
void split_documents(std::string_view text, std::vector<std::string_view> &docs);

// Entropy (nats per token) of the distribution given by `counts`: the loss of the best model
// that ignores context, fitted to these very tokens.
double unigram_entropy(std::span<const int64_t> counts);
// Cross-entropy (nats per token) of `eval` tokens under the unigram model of `fit` with add-one
// smoothing: the unigram baseline for a validation loss.
double unigram_cross_entropy(std::span<const int64_t> fit, std::span<const int64_t> eval);

// --- token shards -------------------------------------------------------------------------------
//
// A shard is a 64-byte little-endian header followed by n_tokens tokens (uint16 when the
// vocabulary has at most 65536 tokens, else uint32):
//   0  char[8]  magic "LMKTOK\0\1"
//   8  u32      version (1)
//  12  u32      bytes per token (2 or 4)
//  16  u64      n_tokens
//  24  u32      vocab_size (every token is below it)
//  28  u32      reserved (0)
//  32  u64      checksum of the token bytes (shard_checksum)
//  40  24 bytes reserved (0)

struct ShardHeader {
  std::array<char, 8> magic;
  uint32_t version;
  uint32_t token_bytes;
  uint64_t n_tokens;
  uint32_t vocab_size;
  uint32_t reserved0;
  uint64_t checksum;
  std::array<uint8_t, 24> reserved1;
};
static_assert(sizeof(ShardHeader) == 64);

inline constexpr std::array<char, 8> kShardMagic = {'L', 'M', 'K', 'T', 'O', 'K', '\0', '\1'};
inline constexpr uint32_t kShardVersion = 1;

uint64_t shard_checksum(const void *data, size_t n);
// Writes a shard atomically; token_bytes is 2 or 4 (every token must fit).
void shard_write(const std::string &path, std::span<const int32_t> tokens, int32_t vocab_size,
                 int token_bytes);

// A memory-mapped shard, validated on open: magic, version, size, checksum, token range.
// Throws "path: truncated token shard (header says N tokens, file holds M)" and the like.
class TokenShard {
 public:
  explicit TokenShard(const std::string &path);
  int64_t size() const { return n_tokens_; }
  int32_t vocab_size() const { return vocab_size_; }
  int token_bytes() const { return token_bytes_; }
  int32_t at(int64_t i) const;
  // Copies tokens [begin, begin + n) widened to int32.
  void read(int64_t begin, int64_t n, int32_t *out) const;
  const std::string &path() const;

 private:
  std::shared_ptr<MappedFile> file_;
  const uint8_t *tokens_ = nullptr;
  int64_t n_tokens_ = 0;
  int32_t vocab_size_ = 0;
  int token_bytes_ = 2;
};

// --- data_prepare -------------------------------------------------------------------------------

struct DataPrepareOptions {
  // Fraction of documents for validation, in [0, 0.5]. The split is by document and evenly
  // spaced: document g (counted over all inputs in order) is a validation document when
  // floor((g + 1) * f) > floor(g * f), so exactly floor(n_documents * f) of them are, spread over
  // the whole corpus rather than taken from its end.
  double val_fraction = 0.05;
  int n_threads = 0;               // 0: every hardware thread
  bool split_paragraphs = true;    // documents at blank lines; false: one document per file
  int64_t shard_tokens = 1 << 26;  // tokens per shard file (64M: 128 MB of uint16)
  bool progress = true;            // a progress bar on stderr when it is a terminal
};

// What meta.json in a prepared folder says.
struct DataMeta {
  std::string dir;        // the folder
  std::string tokenizer;  // the tokenizer (a copy inside `dir` for tokenizer.json ones)
  int32_t vocab_size = 0;
  int token_bytes = 2;
  int32_t separator_id = -1;  // put before every document and at the end of each split; -1 none
  std::vector<std::string> train_shards, val_shards;  // full paths
  int64_t train_tokens = 0, val_tokens = 0;
  int64_t train_documents = 0, val_documents = 0;
  double val_fraction = 0;
  // Unigram baselines: entropy of the train tokens, and cross-entropy of the validation tokens
  // under the train unigram (add-one smoothing). A model has learned something when its
  // validation loss is well below val_unigram_loss.
  double unigram_entropy = 0, val_unigram_loss = 0;
  // Of this run only (not read back): input bytes, seconds, bytes of invalid UTF-8 replaced.
  int64_t input_bytes = 0, repaired_bytes = 0;
  double seconds = 0;
};

// Tokenizes the input files into `out_dir` (created if missing): train_000.bin..., val_000.bin...,
// meta.json, and a copy of the tokenizer files under tokenizer/ (for tokenizer.json tokenizers).
// Each document becomes [separator] + encode(document) with no other special tokens; special-token
// text inside documents is treated as plain text. Tokenization runs on n_threads threads over
// document chunks; the output does not depend on the thread count. Throws lmkit::Error on a
// missing, empty or binary input (naming it), a val_fraction outside [0, 0.5], a split left
// without documents, a tokenizer that cannot be loaded, or an output folder that cannot be written.
DataMeta data_prepare(const std::string &tokenizer, const std::vector<std::string> &inputs,
                      const std::string &out_dir, const DataPrepareOptions &opt = {});

// Reads `dir`/meta.json (throws naming the file when it is missing or malformed).
DataMeta data_meta_load(const std::string &dir);

// --- DataLoader ---------------------------------------------------------------------------------

enum class Split { Train, Val };

struct DataLoaderOptions {
  int64_t batch_size = 8;  // B windows per batch (per rank)
  int64_t context = 256;   // T: each window holds T + 1 tokens (inputs [0, T), targets [1, T])
  uint64_t seed = 1;
  int rank = 0, n_ranks = 1;  // data parallel: a step takes n_ranks * B windows, rank r the r-th B
};

// The loader's position; restoring it into a loader over the same data and context continues with
// exactly the batches an uninterrupted run would have seen.
struct DataLoaderState {
  uint64_t seed = 1;
  int64_t epoch = 0;
  int64_t index = 0;     // windows of this epoch already served (over all ranks)
  int64_t batches = 0;   // batches served so far
  int64_t context = 0;   // for checking on restore
  int64_t n_tokens = 0;  // tokens in the split, for checking on restore

  std::string to_json() const;
  static DataLoaderState from_json(std::string_view text);  // throws on malformed text
  bool operator==(const DataLoaderState &) const = default;
};

// Epochs: the split is cut into non-overlapping windows of T + 1 tokens (window k starts at
// shift + k*T in its shard, so consecutive windows share one token, the last target of one being
// the first input of the next; windows never cross shards), and each epoch serves them in a
// fresh random order: every token is seen once per epoch. The shift in [0, T) is drawn per epoch
// (0 in epoch 0) so that later epochs cut the text at other places. Order and shift come from
// (seed, epoch) alone, so the state is just (epoch, index).
class DataLoader {
 public:
  DataLoader(const std::string &data_dir, Split split, const DataLoaderOptions &opt);
  ~DataLoader();
  DataLoader(const DataLoader &) = delete;
  DataLoader &operator=(const DataLoader &) = delete;

  // Fills `tokens` (B, T + 1) row-major with the next batch: row b is one window, inputs are
  // tokens[b, 0:T] and targets tokens[b, 1:T+1].
  void next_batch(int32_t *tokens);
  std::vector<int32_t> next_batch();

  DataLoaderState state() const;
  // Throws when the state belongs to other data (token count) or another context length.
  void set_state(const DataLoaderState &s);

  // Evaluation: the windows at offsets k*T of every shard in order (no shuffle, no shift), so
  // every evaluation sees the same tokens. eval_batch(i) fills rows with windows [i*B, i*B + B)
  // (of this rank's share when n_ranks > 1) and returns how many rows it filled (the last batch
  // may be short; 0 past the end).
  int64_t n_eval_windows() const;
  int64_t n_eval_batches() const;
  int64_t eval_batch(int64_t i, int32_t *tokens) const;

  int64_t windows_per_epoch() const { return n_windows_; }  // of epoch 0; others differ by <= 1
  int64_t n_tokens() const { return n_tokens_; }
  int64_t batch_size() const { return opt_.batch_size; }
  int64_t context() const { return opt_.context; }
  const DataMeta &meta() const { return meta_; }

 private:
  void start_epoch(int64_t epoch);
  // Copies window `window` of the layout with this shift (`first`: its per-shard prefix sums).
  void read_window(int64_t window, int64_t shift, const std::vector<int64_t> &first,
                   int32_t *out) const;
  int64_t windows_in(int64_t shard, int64_t shift) const;

  DataMeta meta_;
  DataLoaderOptions opt_;
  std::vector<std::unique_ptr<TokenShard>> shards_;
  int64_t n_tokens_ = 0, n_windows_ = 0;
  // Current epoch: its shift, the first window index of each shard, and the order.
  int64_t epoch_ = -1, shift_ = 0, index_ = 0, batches_ = 0;
  std::vector<int64_t> first_window_;  // (n_shards + 1) prefix sums
  std::vector<int64_t> order_;         // (windows this epoch) a permutation
  std::vector<int64_t> eval_first_;    // (n_shards + 1) prefix sums of the shift-0 layout
};

}  // namespace lmkit
