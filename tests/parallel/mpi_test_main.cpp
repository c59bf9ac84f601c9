// main() of the MPI test binaries (mpi_test.h).
#include <gtest/gtest.h>

#include "parallel/mpi_test.h"

namespace lmkit::test {

mpi::Comm &mpi_world() {
  static mpi::Comm *w = new mpi::Comm(mpi::Comm::world());
  return *w;
}

}  // namespace lmkit::test

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  lmkit::mpi::Runtime runtime;
  lmkit::test::mpi_world().set_timeout(60);
  double failed = RUN_ALL_TESTS();
  lmkit::test::mpi_world().all_reduce_sum(std::span<double>(&failed, 1));
  return failed != 0;
}
