// The MPI training driver: runtime, grid, threads per rank, errors that end the job.
#include "parallel/distributed.h"

#include <cstdio>
#include <new>
#include <thread>

#include "core/error.h"
#include "parallel/comm.h"
#include "parallel/dp.h"

namespace lmkit {

bool wants_mpi(const ParallelOptions &p) {
  return p.dp > 1 || mpi::launched_by_mpirun();
}

bool train_distributed(TrainConfig cfg, const std::string &run_dir, TrainOptions opt,
                       const ParallelOptions &p, TrainResult &res) {
  // Mistakes every rank can see are plain errors, before MPI starts.
  LMKIT_CHECK(p.dp >= 1, "--dp must be at least 1, got ", p.dp);
  LMKIT_CHECK(p.dp == 1 || mpi::launched_by_mpirun(), "--dp ", p.dp, " needs ", p.dp,
              " processes: launch with mpirun -np ", p.dp, " lmkit train ...");
  LMKIT_CHECK(cfg.grad_accum >= p.dp, "--micro-batches ", cfg.grad_accum, " cannot feed ", p.dp,
              " data-parallel ranks (each needs at least one micro-batch per step)");
  mpi::Runtime runtime;
  mpi::Comm world = mpi::Comm::world();
  std::string error;
  bool writer = false;
  try {
    if (p.comm_timeout > 0) world.set_timeout(p.comm_timeout);
    mpi::Grid grid = mpi::make_grid(world, p.dp, 1);
    if (cfg.threads == 0)
      cfg.threads = std::max(1, int(std::thread::hardware_concurrency()) / world.ranks_on_node());
    DataParallelOptions dpo = DataParallelOptions::from_env();
    dpo.bucket_bytes = p.bucket_bytes;
    dpo.overlap = p.overlap;
    DataParallel sync(grid.dp, dpo);
    writer = sync.writer();
    opt.sync = &sync;
    if (!writer) {
      opt.progress = false;
      opt.quiet = true;
    }
    res = train(cfg, run_dir, opt);
  } catch (const Error &e) {
    error = e.what();
  } catch (const std::bad_alloc &) {
    error = "out of memory";
  } catch (const std::exception &e) {
    error = e.what();
  }
  if (!error.empty()) {
    std::fprintf(stderr, "lmkit: error: rank %d: %s\n", world.rank(), error.c_str());
    std::fflush(stderr);
    world.abort(1);  // ends every rank: none is left waiting for this one
  }
  return writer;
}

}  // namespace lmkit
