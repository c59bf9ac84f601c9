// The distributed training driver: runs train() as one rank of an MPI job (mpirun -np N lmkit
// train --dp N ...). It starts MPI, lays the ranks out as a dp x pp grid, hands train() the
// data-parallel StepSync, and turns an error on any rank into a one-line message and the end of
// the whole job (MPI_Abort), so no rank is left waiting. With pp > 1 it trains through the
// pipeline (pp.h) and, at the end, the writer prints every stage's busy / idle time and peak
// activation memory and writes them to RUN/pipeline.json. Not the loop (trainer.h) and not the
// gradient sums (dp.h).
#pragma once

#include <string>

#include "parallel/pp.h"
#include "train/trainer.h"

namespace lmkit {

struct ParallelOptions {
  int dp = 1;                             // data-parallel replicas
  parallel::PipelineOptions pipe;         // stages per replica, schedule, sequence chunks
  size_t bucket_bytes = size_t(4) << 20;  // gradient all-reduce bucket size
  bool overlap = true;                    // start buckets during backward
  double comm_timeout = 0;                // seconds a wait may take (0: LMKIT_COMM_TIMEOUT or 300)
};

// True when this process should run as a rank of an MPI job: started by mpirun, or asked for
// more than one rank.
bool wants_mpi(const ParallelOptions &p);

// Trains as this process's rank. Returns true on the writer (rank 0), whose `res` holds the run's
// result. On an error it prints "lmkit: error: rank R: ..." and aborts the job (exit code 1).
// cfg.threads == 0 becomes the machine's threads divided among the ranks on it.
bool train_distributed(TrainConfig cfg, const std::string &run_dir, TrainOptions opt,
                       const ParallelOptions &p, TrainResult &res);

}  // namespace lmkit
