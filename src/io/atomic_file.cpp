// Temp + fsync + rename.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace lmkit {

namespace {
// Testing aid: LMKIT_FAULT_DISK_FULL_AFTER=N makes writes fail with ENOSPC once this process has
// written N bytes through AtomicFile, to exercise full-disk handling without a real full disk.
std::atomic<int64_t> &fault_budget() {
  static std::atomic<int64_t> budget = [] {
    const char *e = std::getenv("LMKIT_FAULT_DISK_FULL_AFTER");
    return e && *e ? std::atoll(e) : int64_t(-1);
  }();
  return budget;
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LMKIT_CHECK(fd_ >= 0, tmp_, ": cannot create (", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void *data, size_t n) {
  const char *p = static_cast<const char *>(data);
  if (fault_budget().load() >= 0) {
    const int64_t left = fault_budget().fetch_sub(int64_t(n));
    LMKIT_CHECK(left >= int64_t(n), path_, ": write failed (", std::strerror(ENOSPC), ")");
  }
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    LMKIT_CHECK(w > 0, path_, ": write failed (", std::strerror(errno), ")");
    p += w;
    n -= size_t(w);
    offset_ += size_t(w);
  }
}

void AtomicFile::pad_to(size_t alignment, char fill) {
  static const char zeros[64] = {};
  size_t pad = (alignment - offset_ % alignment) % alignment;
  while (pad > 0) {
    size_t n = std::min(pad, sizeof zeros);
    if (fill == 0) {
      write(zeros, n);
    } else {
      std::string f(n, fill);
      write(f.data(), n);
    }
    pad -= n;
  }
}

void AtomicFile::commit() {
  LMKIT_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", std::strerror(errno), ")");
  LMKIT_CHECK(::close(fd_) == 0, path_, ": close failed (", std::strerror(errno), ")");
  fd_ = -1;
  LMKIT_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, path_, ": rename failed (",
              std::strerror(errno), ")");
  committed_ = true;
  std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string &path, std::string_view contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace lmkit
