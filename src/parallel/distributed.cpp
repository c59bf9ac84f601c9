// The MPI training driver: runtime, grid, threads per rank, errors that end the job.
#include "parallel/distributed.h"

#include <cstdio>
#include <memory>
#include <new>
#include <thread>

#include "core/error.h"
#include "io/atomic_file.h"
#include "parallel/comm.h"
#include "parallel/dp.h"

namespace lmkit {

bool wants_mpi(const ParallelOptions &p) {
  return p.dp > 1 || p.pipe.pp > 1 || mpi::launched_by_mpirun();
}

bool train_distributed(TrainConfig cfg, const std::string &run_dir, TrainOptions opt,
                       const ParallelOptions &p, TrainResult &res) {
  // Mistakes every rank can see are plain errors, before MPI starts.
  const int pp = p.pipe.pp, ranks = p.dp * pp;
  LMKIT_CHECK(p.dp >= 1, "--dp must be at least 1, got ", p.dp);
  LMKIT_CHECK(pp >= 1, "--pp must be at least 1, got ", pp);
  const std::string layout = pp == 1     ? str_cat("--dp ", p.dp)
                             : p.dp == 1 ? str_cat("--pp ", pp)
                                         : str_cat("--dp ", p.dp, " --pp ", pp);
  LMKIT_CHECK(ranks == 1 || mpi::launched_by_mpirun(), layout, " needs ", ranks,
              " processes: launch with mpirun -np ", ranks, " lmkit train ...");
  LMKIT_CHECK(cfg.grad_accum >= p.dp, "--micro-batches ", cfg.grad_accum, " cannot feed ", p.dp,
              " data-parallel ranks (each needs at least one micro-batch per step)");
  mpi::Runtime runtime;
  mpi::Comm world = mpi::Comm::world();
  std::string error;
  bool writer = false;
  try {
    if (p.comm_timeout > 0) world.set_timeout(p.comm_timeout);
    mpi::Grid grid = mpi::make_grid(world, p.dp, pp);
    if (cfg.threads == 0)
      cfg.threads = std::max(1, int(std::thread::hardware_concurrency()) / world.ranks_on_node());
    DataParallelOptions dpo = DataParallelOptions::from_env();
    dpo.bucket_bytes = p.bucket_bytes;
    dpo.overlap = p.overlap;
    std::unique_ptr<DataParallel> dp;
    std::unique_ptr<parallel::PipelineParallel> pipe;
    if (pp > 1) {
      pipe = std::make_unique<parallel::PipelineParallel>(world, grid, p.pipe, dpo);
      opt.sync = pipe.get();
    } else {
      dp = std::make_unique<DataParallel>(grid.dp, dpo);
      opt.sync = dp.get();
    }
    writer = opt.sync->writer();
    const bool quiet = opt.quiet;
    if (!writer) {
      opt.progress = false;
      opt.quiet = true;
    }
    res = train(cfg, run_dir, opt);
    if (pipe) {  // every stage's time and memory, reported by the writer
      const std::vector<parallel::StageTotals> t = pipe->gather_totals();
      if (writer) {
        write_file_atomic(run_dir + "/pipeline.json",
                          parallel::stage_totals_json(t, grid, p.pipe, pipe->chunk_lengths()));
        if (!quiet)
          std::fprintf(stderr, "lmkit train: pipeline stages (%s, %d chunks per micro-batch)\n%s",
                       parallel::schedule_kind_name(p.pipe.schedule), p.pipe.seq_chunks,
                       parallel::stage_totals_table(t, grid).c_str());
      }
    }
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
