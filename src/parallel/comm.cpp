// The MPI communicator: every blocking call is a non-blocking one polled against a deadline, so a
// dead or stuck peer becomes an Error instead of a hang.
#include "parallel/comm.h"

#include <mpi.h>
#include <sched.h>
#include <time.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/timer.h"

namespace lmkit::mpi {

namespace {

bool g_runtime = false;

MPI_Comm as_comm(void *c) {
  MPI_Comm m;
  static_assert(sizeof(MPI_Comm) <= sizeof(void *));
  std::memcpy(&m, &c, sizeof m);
  return m;
}
void *erase_comm(MPI_Comm m) {
  void *c = nullptr;
  std::memcpy(&c, &m, sizeof m);
  return c;
}

// Throws for an MPI return code other than MPI_SUCCESS, with MPI's own text.
void check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI: ", what, " failed: ", std::string(text, size_t(std::max(0, len))));
}

int checked_count(size_t n, const char *what) {
  LMKIT_CHECK(n <= size_t(INT_MAX), "MPI: ", what, " of ", n,
              " values is larger than one message can hold");
  return int(n);
}

// Sleeps a little longer the longer a wait lasts (ranks often share cores here).
void backoff(int spins) {
  if (spins < 64) return;
  if (spins < 512) {
    sched_yield();
    return;
  }
  timespec ts{0, spins < 4096 ? 50'000 : 500'000};
  nanosleep(&ts, nullptr);
}

}  // namespace

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
}

Runtime::Runtime() {
  int init = 0, done = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&done);
  LMKIT_CHECK(!init && !done, "MPI: already initialised in this process");
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  g_runtime = true;
}

Runtime::~Runtime() {
  g_runtime = false;
  MPI_Finalize();
}

bool Runtime::active() {
  return g_runtime;
}

// ---- requests --------------------------------------------------------------------------------

struct Request::Handle {
  MPI_Request r = MPI_REQUEST_NULL;
};

Request::Request(Request &&o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
Request &Request::operator=(Request &&o) noexcept {
  std::swap(h_, o.h_);
  return *this;
}
Request::~Request() {
  // Abandoned in flight only when an error unwound past it; the job is then ending (freeing an
  // active collective request is not allowed), so MPI's side of it is left as it is.
  delete h_;
}

bool Request::test() {
  if (!h_) return true;
  int done = 0;
  check(MPI_Test(&h_->r, &done, MPI_STATUS_IGNORE), "MPI_Test");
  if (done) {
    delete h_;
    h_ = nullptr;
  }
  return done != 0;
}

// ---- communicator ----------------------------------------------------------------------------

Comm::Comm(void *comm, bool owned) : comm_(comm), owned_(owned) {
  MPI_Comm c = as_comm(comm_);
  check(MPI_Comm_rank(c, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(c, &size_), "MPI_Comm_size");
  if (const char *t = std::getenv("LMKIT_COMM_TIMEOUT")) {
    char *end = nullptr;
    const double v = std::strtod(t, &end);
    LMKIT_CHECK(end != t && *end == 0 && v > 0, "LMKIT_COMM_TIMEOUT=", t,
                ": expects a positive number of seconds");
    timeout_ = v;
  }
}

Comm Comm::world() {
  LMKIT_CHECK(g_runtime, "MPI: no runtime (make an mpi::Runtime first)");
  return Comm(erase_comm(MPI_COMM_WORLD), false);
}

Comm::Comm(Comm &&o) noexcept
    : comm_(std::exchange(o.comm_, nullptr)),
      owned_(std::exchange(o.owned_, false)),
      rank_(o.rank_),
      size_(o.size_),
      timeout_(o.timeout_) {}

Comm &Comm::operator=(Comm &&o) noexcept {
  std::swap(comm_, o.comm_);
  std::swap(owned_, o.owned_);
  rank_ = o.rank_;
  size_ = o.size_;
  timeout_ = o.timeout_;
  return *this;
}

Comm::~Comm() {
  if (owned_ && comm_ && g_runtime) {
    MPI_Comm c = as_comm(comm_);
    MPI_Comm_free(&c);
  }
}

Comm Comm::split(int color, int key) const {
  MPI_Comm out;
  check(MPI_Comm_split(as_comm(comm_), color, key, &out), "MPI_Comm_split");
  MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN);
  Comm c(erase_comm(out), true);
  c.timeout_ = timeout_;
  return c;
}

int Comm::ranks_on_node() const {
  if (size_ == 1) return 1;
  MPI_Comm node;
  check(MPI_Comm_split_type(as_comm(comm_), MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  int n = 1;
  MPI_Comm_size(node, &n);
  MPI_Comm_free(&node);
  return n;
}

void Comm::set_timeout(double seconds) {
  LMKIT_CHECK(seconds > 0, "MPI: the timeout must be positive, got ", seconds);
  timeout_ = seconds;
}

void Comm::wait_raw(void *req, const char *what) {
  MPI_Request *r = static_cast<MPI_Request *>(req);
  const double deadline = now_seconds() + timeout_;
  for (int spins = 0;; ++spins) {
    int done = 0;
    check(MPI_Test(r, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if ((spins & 63) == 0 && now_seconds() > deadline) {
      // The request stays with MPI (an active collective cannot be freed): the job is ending.
      fail(what, " got no answer from the other ranks in ", timeout_, " s (a rank died or hangs)");
    }
    backoff(spins);
  }
}

void Comm::wait(Request &r, const char *what) {
  if (!r.h_) return;
  wait_raw(&r.h_->r, what);
  delete r.h_;
  r.h_ = nullptr;
}

Request Comm::isend(std::span<const float> buf, int dest, int tag) {
  Request req;
  req.h_ = new Request::Handle;
  check(MPI_Isend(buf.data(), checked_count(buf.size(), "send"), MPI_FLOAT, dest, tag,
                  as_comm(comm_), &req.h_->r),
        "MPI_Isend");
  return req;
}

void Comm::send(std::span<const float> buf, int dest, int tag) {
  Request r = isend(buf, dest, tag);
  wait(r, "send");
}

void Comm::recv(std::span<float> buf, int src, int tag) {
  MPI_Request r;
  check(MPI_Irecv(buf.data(), checked_count(buf.size(), "recv"), MPI_FLOAT, src, tag,
                  as_comm(comm_), &r),
        "MPI_Irecv");
  wait_raw(&r, "receive");
}

Request Comm::iall_reduce_sum(std::span<float> buf) {
  Request req;
  if (size_ == 1 || buf.empty()) return req;
  req.h_ = new Request::Handle;
  check(MPI_Iallreduce(MPI_IN_PLACE, buf.data(), checked_count(buf.size(), "all-reduce"), MPI_FLOAT,
                       MPI_SUM, as_comm(comm_), &req.h_->r),
        "MPI_Iallreduce");
  return req;
}

void Comm::all_reduce_sum(std::span<float> buf) {
  Request r = iall_reduce_sum(buf);
  wait(r, "all-reduce");
}

void Comm::all_reduce_sum(std::span<double> buf) {
  if (size_ == 1 || buf.empty()) return;
  MPI_Request r;
  check(MPI_Iallreduce(MPI_IN_PLACE, buf.data(), checked_count(buf.size(), "all-reduce"),
                       MPI_DOUBLE, MPI_SUM, as_comm(comm_), &r),
        "MPI_Iallreduce");
  wait_raw(&r, "all-reduce");
}

std::string Comm::broadcast(const std::string &s, int root) {
  LMKIT_CHECK(root >= 0 && root < size_, "MPI: broadcast root ", root, " is not a rank");
  if (size_ == 1) return s;
  long long n = rank_ == root ? (long long)s.size() : 0;
  MPI_Request r;
  check(MPI_Ibcast(&n, 1, MPI_LONG_LONG, root, as_comm(comm_), &r), "MPI_Ibcast");
  wait_raw(&r, "broadcast");
  std::string out = rank_ == root ? s : std::string(size_t(n), '\0');
  if (n > 0) {
    check(MPI_Ibcast(out.data(), checked_count(size_t(n), "broadcast"), MPI_CHAR, root,
                     as_comm(comm_), &r),
          "MPI_Ibcast");
    wait_raw(&r, "broadcast");
  }
  return out;
}

void Comm::barrier() {
  if (size_ == 1) return;
  MPI_Request r;
  check(MPI_Ibarrier(as_comm(comm_), &r), "MPI_Ibarrier");
  wait_raw(&r, "barrier");
}

void Comm::abort(int code) const {
  if (!g_runtime) std::_Exit(code);
  MPI_Abort(comm_ ? as_comm(comm_) : MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]]
}

Grid make_grid(const Comm &world, int dp, int pp) {
  LMKIT_CHECK(dp >= 1 && pp >= 1, "--dp and --pp must be at least 1 (got ", dp, " and ", pp, ")");
  LMKIT_CHECK(int64_t(dp) * pp == world.size(), "--dp ", dp, " x --pp ", pp, " = ", dp * pp,
              " ranks, but the job has ", world.size(), " (launch with mpirun -np ", dp * pp, ")");
  Grid g;
  g.dp_size = dp;
  g.pp_size = pp;
  g.dp_index = world.rank() / pp;
  g.stage = world.rank() % pp;
  g.dp = world.split(g.stage, g.dp_index);
  g.pp = world.split(g.dp_index, g.stage);
  return g;
}

}  // namespace lmkit::mpi
