// AtomicFile: write a file so that readers see either the old file or the complete new one, never
// a torn write (temp file in the same folder, fsync, rename, fsync the folder). Not buffered I/O
// for hot paths; it is for checkpoints, converted models and other user files.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lmkit {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates PATH.tmp.<pid> beside PATH
  ~AtomicFile();                          // removes the temp file unless commit() ran
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  void write(const void *data, size_t n);  // throws lmkit::Error on any failure (disk full, ...)
  void write(std::string_view s) { write(s.data(), s.size()); }
  void pad_to(size_t alignment, char fill = 0);
  size_t offset() const { return offset_; }
  void commit();  // fsync, close, rename over PATH, fsync the folder

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  size_t offset_ = 0;
  bool committed_ = false;
};

// Convenience: atomically replaces PATH with `contents`.
void write_file_atomic(const std::string &path, std::string_view contents);

}  // namespace lmkit
