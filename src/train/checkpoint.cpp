// Temp folder + fsync'd files + rename; the newest complete step folder is the latest.
#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/mmap.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace lmkit {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

void fsync_dir(const fs::path &dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

bool complete(const fs::path &dir) {
  return fs::exists(dir / "trainer_state.json") && fs::exists(dir / "model.safetensors") &&
         fs::exists(dir / "config.json");
}

// Testing aid: LMKIT_FAULT_KILL_IN_CHECKPOINT=N sends SIGKILL to this process in the middle of
// its N-th checkpoint save (model written, state not yet), to test resuming after such a crash.
void kill_point() {
  static int saves = 0;
  const char *e = std::getenv("LMKIT_FAULT_KILL_IN_CHECKPOINT");
  if (e && *e && ++saves == std::atoi(e)) ::kill(::getpid(), SIGKILL);
}

}  // namespace

std::string checkpoint_save(const std::string &run_dir, int64_t step, const ModelConfig &c,
                            const Weights &w, const Optimizer &opt, const nlohmann::json &state,
                            const std::string &tokenizer_dir, int keep) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  const fs::path final_dir = root / step_name(step);
  const fs::path tmp = root / (".tmp-" + step_name(step) + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    weights_save_hf(c, w, tmp.string());
    kill_point();
    safetensors_write((tmp / "optimizer.safetensors").string(), opt.state_tensors());
    for (const char *f : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path src = fs::path(tokenizer_dir) / f;
      if (!tokenizer_dir.empty() && fs::exists(src))
        write_file_atomic((tmp / f).string(), read_file(src.string()));
    }
    nlohmann::json st = state;
    st["step"] = step;
    st["optimizer"] = opt.state_scalars();
    // Written last: its presence marks the folder complete.
    write_file_atomic((tmp / "trainer_state.json").string(), st.dump(2) + "\n");
    fsync_dir(tmp);
    if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a re-run step after a resume
    fs::rename(tmp, final_dir);
    fsync_dir(root);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  if (keep > 0) {
    std::vector<fs::path> steps;
    for (const auto &e : fs::directory_iterator(root))
      if (e.is_directory() && e.path().filename().string().rfind("step_", 0) == 0)
        steps.push_back(e.path());
    std::sort(steps.begin(), steps.end());
    for (size_t i = 0; i + size_t(keep) < steps.size(); ++i)
      if (steps[i] != final_dir) fs::remove_all(steps[i]);
  }
  return final_dir.string();
}

std::optional<std::string> checkpoint_latest(const std::string &run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return std::nullopt;
  std::vector<fs::path> steps;
  for (const auto &e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0) {
      std::error_code ec;
      fs::remove_all(e.path(), ec);  // an interrupted save
    } else if (e.is_directory() && name.rfind("step_", 0) == 0 && complete(e.path())) {
      steps.push_back(e.path());
    }
  }
  if (steps.empty()) return std::nullopt;
  std::sort(steps.begin(), steps.end());
  return steps.back().string();
}

CheckpointData checkpoint_read(const std::string &dir) {
  CheckpointData d;
  const std::string sp = dir + "/trainer_state.json";
  try {
    d.state = nlohmann::json::parse(read_file(sp));
  } catch (const nlohmann::json::exception &e) {
    fail(sp, ": not valid JSON (", e.what(), ")");
  }
  LMKIT_CHECK(d.state.is_object() && d.state.contains("step"), sp, ": no step");
  SafetensorsFile f = SafetensorsFile::open(dir + "/optimizer.safetensors");
  for (const auto &t : f.tensors()) d.optimizer[t.name] = f.tensor(t).contiguous();
  return d;
}

}  // namespace lmkit
