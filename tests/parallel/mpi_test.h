// Shared by the MPI test binaries (test_mpi_dp, test_mpi_pipeline, test_mpi_pp), which mpirun
// starts as several ranks: the world communicator, and a main() (mpi_test_main.cpp) that starts
// MPI, bounds every wait so a rank that fails early cannot leave the others waiting, and fails
// the run on every rank when a test failed on any.
#pragma once

#include "parallel/comm.h"

namespace lmkit::test {

mpi::Comm &mpi_world();  // lives until exit

}  // namespace lmkit::test
