// The communicator: a thin RAII layer over Open MPI for the distributed trainer. It starts and
// stops MPI, names ranks, splits the world into data- and pipeline-parallel groups, and moves
// float buffers (send/recv, all-reduce sum, broadcast, barrier). Every wait is bounded: a peer
// that died or hangs turns into an lmkit::Error naming the operation and the timeout, never a
// silent hang, and MPI failures (MPI_ERRORS_RETURN) become one-line lmkit::Errors too.
// Not a transport of its own (Open MPI moves the bytes) and not the training loop (dp.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lmkit::mpi {

// True when this process was started by mpirun / a PMIx launcher (it then belongs to a job).
bool launched_by_mpirun();

// MPI_Init_thread (funneled: only the thread that made the Runtime calls MPI) and MPI_Finalize.
// One per process; a second one, or one after finalize, is an error.
class Runtime {
 public:
  Runtime();
  ~Runtime();
  Runtime(const Runtime &) = delete;
  Runtime &operator=(const Runtime &) = delete;
  static bool active();  // a Runtime exists and MPI is initialised
};

// An in-flight non-blocking operation (all-reduce of a bucket, a send or a receive).
class Request {
 public:
  Request() = default;
  Request(Request &&o) noexcept;
  Request &operator=(Request &&o) noexcept;
  ~Request();
  bool pending() const { return h_ != nullptr; }
  // Drives MPI's progress once; true when the operation is complete (or none was started).
  bool test();

 private:
  friend class Comm;
  struct Handle;
  Handle *h_ = nullptr;
};

class Comm {
 public:
  // MPI_COMM_WORLD (a Runtime must exist). Its errors return instead of aborting.
  static Comm world();
  Comm() = default;  // empty: one rank, no MPI (assign a real one before communicating)
  Comm(Comm &&o) noexcept;
  Comm &operator=(Comm &&o) noexcept;
  ~Comm();  // frees a communicator made by split()

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ranks with the same color form a new communicator, ordered by key.
  Comm split(int color, int key) const;
  // How many ranks of this communicator share this machine (they share its cores).
  int ranks_on_node() const;

  // Seconds any wait may take before it fails with an Error (default 300; LMKIT_COMM_TIMEOUT
  // overrides it at start-up).
  void set_timeout(double seconds);
  double timeout() const { return timeout_; }

  void send(std::span<const float> buf, int dest, int tag);
  // Starts a send; buf must stay alive and unchanged until wait() (or test()) finishes it.
  Request isend(std::span<const float> buf, int dest, int tag);
  void recv(std::span<float> buf, int src, int tag);
  // In-place sums over every rank of this communicator.
  void all_reduce_sum(std::span<float> buf);
  void all_reduce_sum(std::span<double> buf);
  // Starts an in-place sum; wait() finishes it. `what` names it in a timeout error.
  Request iall_reduce_sum(std::span<float> buf);
  void wait(Request &r, const char *what);
  // Every rank's copy of root's string.
  std::string broadcast(const std::string &s, int root);
  void barrier();
  // Ends the whole job (every rank of every communicator) with this exit code.
  [[noreturn]] void abort(int code) const;

 private:
  Comm(void *comm, bool owned);
  void wait_raw(void *req, const char *what);
  void *comm_ = nullptr;  // MPI_Comm, type-erased so the header needs no mpi.h
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
  double timeout_ = 300;
};

// The ranks of a dp x pp job: rank = dp_index * pp + stage. `dp` links the ranks that hold the
// same stage (gradients are summed over it); `pp` links the stages of one data-parallel replica.
struct Grid {
  int dp_size = 1, pp_size = 1;
  int dp_index = 0, stage = 0;
  Comm dp, pp;
};
// Splits world into a dp x pp grid; throws when dp * pp differs from the number of ranks.
Grid make_grid(const Comm &world, int dp, int pp);

}  // namespace lmkit::mpi
