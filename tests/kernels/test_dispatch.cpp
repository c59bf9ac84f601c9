// Tests of kernel-table selection: available(), find(), require() and LMKIT_KERNELS.
// Not the kernels themselves (the other test files compare every table against ref).
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "core/cpu.h"
#include "core/error.h"
#include "kernels/kernel_test_util.h"

namespace lmkit::test {
namespace {

using kernels::KernelTable;

TEST(Dispatch, AvailableListsRefFirstAndEachTableOnce) {
  const auto tables = kernels::available();
  ASSERT_FALSE(tables.empty());
  EXPECT_STREQ(tables[0]->name, "ref");
  EXPECT_EQ(tables[0], &kernels::ref::ref_table());
  std::set<std::string> names;
  for (const KernelTable *t : tables) {
    EXPECT_TRUE(names.insert(t->name).second) << t->name;
    EXPECT_EQ(kernels::find(t->name), t);
    EXPECT_EQ(&kernels::require(t->name), t);
    // Every entry is filled in.
    EXPECT_TRUE(t->matmul_f32 && t->matmul_f16 && t->matmul_bf16 && t->embedding_fwd &&
                t->rmsnorm_fwd && t->layernorm_fwd && t->rope_fwd && t->silu_fwd && t->gelu_fwd &&
                t->gelu_tanh_fwd && t->swiglu_fwd && t->add_fwd && t->softmax_fwd &&
                t->attention_fwd && t->matmul_bwd_x && t->matmul_bwd_w && t->embedding_bwd &&
                t->rmsnorm_bwd && t->layernorm_bwd && t->silu_bwd && t->gelu_bwd &&
                t->gelu_tanh_bwd && t->swiglu_bwd && t->cross_entropy_fwd_bwd &&
                t->attention_bwd)
        << t->name;
  }
}

TEST(Dispatch, TablesFollowCpuFeatures) {
  const CpuFeatures &f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
#if defined(__x86_64__)
  EXPECT_EQ(kernels::find("avx2") != nullptr, avx2) << f.str();
  EXPECT_EQ(kernels::find("avx512") != nullptr, avx512) << f.str();
#endif
  if (!avx512) {
    EXPECT_THROW(kernels::require("avx512"), Error);
  }
}

TEST(Dispatch, UnknownNamesAreRejectedWithTheChoices) {
  EXPECT_NE(kernels::find("ref"), nullptr);
  EXPECT_EQ(kernels::find("bogus"), nullptr);
  EXPECT_EQ(kernels::find(""), nullptr);
  try {
    kernels::require("bogus");
    FAIL() << "require(\"bogus\") did not throw";
  } catch (const Error &e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("LMKIT_KERNELS=bogus"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ref"), std::string::npos) << msg;
  }
}

// active() honours LMKIT_KERNELS (run the suite with LMKIT_KERNELS=ref, =avx2 or =bogus to
// exercise it): a table this CPU runs is used, anything else is an error; unset, the widest wins.
TEST(Dispatch, ActiveHonoursTheEnvironment) {
  const char *env = std::getenv("LMKIT_KERNELS");
  if (env && *env && !kernels::find(env)) {
    EXPECT_THROW(kernels::active(), Error) << "LMKIT_KERNELS=" << env << " must be refused";
  } else if (env && *env) {
    EXPECT_STREQ(kernels::active().name, env);
  } else {
    EXPECT_EQ(&kernels::active(), kernels::available().back());
  }
}

}  // namespace
}  // namespace lmkit::test
