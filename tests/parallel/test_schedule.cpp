// Tests of the pipeline schedules as data (GPipe, 1F1B, Seq1F1B), without running a model: every
// stage runs every (micro-batch, chunk) forward and backward once; dependencies hold in the
// executed timeline; playing the lists with blocking sends and receives never deadlocks; the peak
// in-flight count and the unit-cost bubble match their closed forms; and broken lists are caught.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>

#include "core/error.h"
#include "parallel/schedule.h"

namespace lmkit::parallel {
namespace {

struct Case {
  ScheduleKind kind;
  int p, m, k;
};

std::string name(const Case &c) {
  return str_cat(schedule_kind_name(c.kind), " p=", c.p, " m=", c.m, " k=", c.k);
}

// Every schedule of the sweep the issue asks for: p in {1,2,4,8}, m in 1..8, k in {1,2,4,8}.
std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (int p : {1, 2, 4, 8})
    for (int m = 1; m <= 8; ++m)
      for (int k : {1, 2, 4, 8}) {
        out.push_back({ScheduleKind::GPipe, p, m, k});
        out.push_back({ScheduleKind::Seq1F1B, p, m, k});
        if (k == 1) out.push_back({ScheduleKind::OneFOneB, p, m, k});
      }
  return out;
}

// Independent of schedule_validate: counts of each compute per stage.
void expect_complete(const Schedule &s, const std::string &what) {
  for (int st = 0; st < s.n_stage; ++st) {
    std::map<std::tuple<int, int, int>, int> count;
    for (const Action &a : s.stages[size_t(st)])
      if (op_is_compute(a.op)) ++count[{int(a.op), a.mb, a.chunk}];
    for (Op op : {Op::Forward, Op::Backward})
      for (int mb = 0; mb < s.n_micro; ++mb)
        for (int c = 0; c < s.n_chunk; ++c)
          EXPECT_EQ((count[{int(op), mb, c}]), 1)
              << what << " stage " << st << " mb " << mb << " chunk " << c;
    EXPECT_EQ(count.size(), size_t(2 * s.n_micro * s.n_chunk)) << what << " stage " << st;
  }
}

// The dependencies, read from the executed timeline: when each compute started and ended.
void expect_dependencies(const Schedule &s, const ExecResult &r, const std::string &what) {
  const int p = s.n_stage, m = s.n_micro, k = s.n_chunk;
  std::vector<Interval> f(size_t(p * m * k)), b(size_t(p * m * k));
  auto at = [&](std::vector<Interval> &v, int st, int mb, int c) -> Interval & {
    return v[(size_t(st) * size_t(m) + size_t(mb)) * size_t(k) + size_t(c)];
  };
  for (int st = 0; st < p; ++st)
    for (size_t i = 0; i < s.stages[size_t(st)].size(); ++i) {
      const Action &a = s.stages[size_t(st)][i];
      if (a.op == Op::Forward) at(f, st, a.mb, a.chunk) = r.timing[size_t(st)][i];
      if (a.op == Op::Backward) at(b, st, a.mb, a.chunk) = r.timing[size_t(st)][i];
    }
  for (int st = 0; st < p; ++st)
    for (int mb = 0; mb < m; ++mb)
      for (int c = 0; c < k; ++c) {
        const std::string where = str_cat(what, " stage ", st, " mb ", mb, " chunk ", c);
        EXPECT_GE(at(b, st, mb, c).start, at(f, st, mb, c).end) << where;
        if (st > 0) {
          EXPECT_GE(at(f, st, mb, c).start, at(f, st - 1, mb, c).end) << where;
        }
        if (st + 1 < p) {
          EXPECT_GE(at(b, st, mb, c).start, at(b, st + 1, mb, c).end) << where;
        }
        if (c > 0) {
          EXPECT_GE(at(f, st, mb, c).start, at(f, st, mb, c - 1).end) << where;
        }
        if (c + 1 < k) {
          EXPECT_GE(at(b, st, mb, c).start, at(b, st, mb, c + 1).end) << where;
        }
      }
}

TEST(Schedule, EverySweepScheduleIsCompleteOrderedAndDeadlockFree) {
  for (const Case &c : all_cases()) {
    for (CommPlacement place : {CommPlacement::JustInTime, CommPlacement::Rendezvous}) {
      const Schedule s = schedule_make(c.kind, c.p, c.m, c.k, place);
      const std::string what =
          name(c) + (place == CommPlacement::JustInTime ? " just-in-time" : " rendezvous");
      ASSERT_NO_THROW(schedule_validate(s)) << what;
      expect_complete(s, what);
      std::vector<SendMode> modes{SendMode::Buffered};
      if (place == CommPlacement::Rendezvous) modes.push_back(SendMode::Rendezvous);
      for (SendMode mode : modes) {
        for (double bwd : {1.0, 2.0}) {
          const ExecResult r =
              schedule_execute(s, CostTable::uniform(c.p, c.k, 1.0, bwd, 0.25), mode);
          ASSERT_TRUE(r.completed) << what << ": " << r.stall;
          expect_dependencies(s, r, what);
        }
      }
    }
  }
}

TEST(Schedule, PeakInFlightMatchesTheClosedForms) {
  for (const Case &c : all_cases()) {
    const std::vector<int> peak = schedule_peak_inflight(schedule_make(c.kind, c.p, c.m, c.k));
    ASSERT_EQ(int(peak.size()), c.p);
    for (int r = 0; r < c.p; ++r) {
      int want = 0;
      switch (c.kind) {
        case ScheduleKind::GPipe:
          want = c.m * c.k;
          break;
        case ScheduleKind::OneFOneB:
          want = std::min(c.p - r, c.m);
          break;  // micro-batches
        case ScheduleKind::Seq1F1B:
          want = std::min(c.p - r + c.k - 1, c.m * c.k);
          break;  // chunks
      }
      EXPECT_EQ(peak[size_t(r)], want) << name(c) << " stage " << r;
    }
  }
}

TEST(Schedule, UnitCostBubbleMatchesTheClosedForms) {
  // (p-1)/(m+p-1) for GPipe and 1F1B, (p-1)/(m k+p-1) for Seq1F1B (and GPipe over chunks) when
  // every chunk costs the same and communication is free; for both forward/backward ratios.
  for (const Case &c : all_cases()) {
    for (double bwd : {1.0, 2.0}) {
      const Schedule s = schedule_make(c.kind, c.p, c.m, c.k, CommPlacement::JustInTime);
      // A chunk is 1/k of a micro-batch.
      const ExecResult r = schedule_execute(s, CostTable::uniform(c.p, c.k, 1.0 / c.k, bwd / c.k),
                                            SendMode::Buffered);
      ASSERT_TRUE(r.completed) << name(c);
      EXPECT_NEAR(r.bubble_fraction(), bubble_closed_form(c.p, c.m, c.k), 1e-12)
          << name(c) << " b/f " << bwd;
      EXPECT_NEAR(r.makespan, (1.0 + bwd) * (c.m * c.k + c.p - 1) / c.k, 1e-9) << name(c);
    }
  }
  EXPECT_DOUBLE_EQ(bubble_closed_form(4, 8, 1), 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(bubble_closed_form(8, 16, 4), 7.0 / 71.0);
  EXPECT_DOUBLE_EQ(bubble_closed_form(1, 3, 2), 0.0);
}

TEST(Schedule, Seq1F1BWithOneChunkIs1F1B) {
  for (int p : {1, 2, 4, 8})
    for (int m = 1; m <= 8; ++m) {
      const Schedule a = schedule_make(ScheduleKind::OneFOneB, p, m, 1);
      const Schedule b = schedule_make(ScheduleKind::Seq1F1B, p, m, 1);
      EXPECT_EQ(a.stages, b.stages) << "p " << p << " m " << m;
    }
}

TEST(Schedule, Seq1F1BWarmupIsThePapers) {
  // Warmup on stage r: (p - r - 1) + (k - 1) chunk forwards (p - r + k - 2 in the authors' code).
  EXPECT_EQ(seq1f1b_warmup(4, 0, 8, 1), 3);
  EXPECT_EQ(seq1f1b_warmup(4, 0, 8, 2), 4);
  EXPECT_EQ(seq1f1b_warmup(4, 3, 8, 4), 3);
  EXPECT_EQ(seq1f1b_warmup(8, 0, 1, 4), 4);  // capped at m k
  for (int p : {2, 4, 8})
    for (int k : {1, 2, 4})
      for (int r = 0; r < p; ++r) {
        const auto order = compute_order(ScheduleKind::Seq1F1B, p, 8, k)[size_t(r)];
        const int w = seq1f1b_warmup(p, r, 8, k);
        for (int i = 0; i < w; ++i) EXPECT_EQ(order[size_t(i)].op, Op::Forward);
        // Then strictly one forward, one backward.
        EXPECT_EQ(order[size_t(w)].op, Op::Forward);
        EXPECT_EQ(order[size_t(w + 1)].op, Op::Backward);
        EXPECT_EQ(order[size_t(w + 1)].chunk, k - 1) << "the first backward is the last chunk";
      }
}

TEST(Schedule, SmallSchedulesSpelledOut) {
  // p = 2, m = 2, k = 2: the lists a reader can check against the paper's Figure 1 by hand.
  EXPECT_EQ(schedule_format(schedule_make(ScheduleKind::Seq1F1B, 2, 2, 2)),
            "stage 0: F0.0 F0.1 F1.0 B0.1 F1.1 B0.0 B1.1 B1.0\n"
            "stage 1: F0.0 F0.1 B0.1 F1.0 B0.0 F1.1 B1.1 B1.0\n");
  EXPECT_EQ(schedule_format(schedule_make(ScheduleKind::OneFOneB, 3, 4, 1)),
            "stage 0: F0 F1 F2 B0 F3 B1 B2 B3\n"
            "stage 1: F0 F1 B0 F2 B1 F3 B2 B3\n"
            "stage 2: F0 B0 F1 B1 F2 B2 F3 B3\n");
  EXPECT_EQ(schedule_format(schedule_make(ScheduleKind::GPipe, 2, 2, 1)),
            "stage 0: F0 F1 B1 B0\n"
            "stage 1: F0 F1 B1 B0\n");
  // With communication, rendezvous placement: stage 0 receives gradient 0 before it sends
  // activation 1, matching stage 1, which sends gradient 0 before it receives activation 1.
  EXPECT_EQ(schedule_format(schedule_make(ScheduleKind::OneFOneB, 2, 2, 1), true),
            "stage 0: F0 sa0>1 F1 rg0<1 sa1>1 B0 rg1<1 B1\n"
            "stage 1: ra0<0 F0 B0 sg0>0 ra1<0 F1 B1 sg1>0\n");
}

TEST(Schedule, JustInTimeSendsDeadlockUnderRendezvousSemantics) {
  // Why the rendezvous placement exists: in 1F1B's steady state both neighbours send at once.
  const Schedule s = schedule_make(ScheduleKind::OneFOneB, 2, 2, 1, CommPlacement::JustInTime);
  EXPECT_EQ(schedule_format(s, true),
            "stage 0: F0 sa0>1 F1 sa1>1 rg0<1 B0 rg1<1 B1\n"
            "stage 1: ra0<0 F0 B0 sg0>0 ra1<0 F1 B1 sg1>0\n");
  const ExecResult r = schedule_execute(s, CostTable::uniform(2, 1, 1, 2), SendMode::Rendezvous);
  EXPECT_FALSE(r.completed);
  EXPECT_EQ(r.stall, "stage 0 waits at action 3 (sa1>1); stage 1 waits at action 3 (sg0>0)");
  EXPECT_TRUE(schedule_execute(s, CostTable::uniform(2, 1, 1, 2), SendMode::Buffered).completed);
  // The same for Seq1F1B over every larger case.
  int deadlocks = 0;
  for (int p : {2, 4, 8})
    for (int m : {2, 4})
      deadlocks += !schedule_execute(
                        schedule_make(ScheduleKind::Seq1F1B, p, m, 2, CommPlacement::JustInTime),
                        CostTable::uniform(p, 2, 1, 2), SendMode::Rendezvous)
                        .completed;
  EXPECT_EQ(deadlocks, 6);
}

TEST(Schedule, RendezvousPlacementSurvivesRandomCosts) {
  // The placement's guarantee does not depend on the costs it was keyed with.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.05, 3.0);
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::Seq1F1B})
    for (int p : {2, 4, 8})
      for (int m : {1, 3, 8})
        for (int k : {1, 2, 4}) {
          if (kind == ScheduleKind::OneFOneB && k > 1) continue;
          const Schedule s = schedule_make(kind, p, m, k);
          CostTable c = CostTable::uniform(p, k, 1, 1, 1);
          for (auto *t : {&c.fwd, &c.bwd, &c.xfer})
            for (auto &row : *t)
              for (double &v : row) v = u(rng);
          for (SendMode mode : {SendMode::Buffered, SendMode::Rendezvous}) {
            const ExecResult r = schedule_execute(s, c, mode);
            ASSERT_TRUE(r.completed) << name({kind, p, m, k}) << ": " << r.stall;
            expect_dependencies(s, r, name({kind, p, m, k}));
          }
        }
}

TEST(Schedule, RendezvousPlacementCostsNothingWithFreeTransfers) {
  // Keyed by the unit-cost run, the synchronous placement reproduces that run's timeline.
  for (const Case &c : all_cases()) {
    const CostTable unit = CostTable::uniform(c.p, c.k, 1, 2);
    const double jit =
        schedule_execute(schedule_make(c.kind, c.p, c.m, c.k, CommPlacement::JustInTime), unit)
            .makespan;
    const ExecResult r =
        schedule_execute(schedule_make(c.kind, c.p, c.m, c.k), unit, SendMode::Rendezvous);
    ASSERT_TRUE(r.completed) << name(c);
    EXPECT_DOUBLE_EQ(r.makespan, jit) << name(c);
  }
}

TEST(Schedule, TransfersAndLinkContentionAreTimed) {
  // p = 2, m = 1: F on stage 0 (1), transfer (0.5), F on 1 (1), B on 1 (2), transfer (0.5),
  // B on 0 (2).
  const Schedule s = schedule_make(ScheduleKind::OneFOneB, 2, 1, 1);
  const ExecResult r = schedule_execute(s, CostTable::uniform(2, 1, 1, 2, 0.5));
  ASSERT_TRUE(r.completed);
  EXPECT_DOUBLE_EQ(r.makespan, 7.0);
  EXPECT_DOUBLE_EQ(r.busy[0], 3.0);
  EXPECT_DOUBLE_EQ(r.bubble_fraction(), 1.0 - 6.0 / 14.0);
  // GPipe p = 2, m = 3 with transfers slower than compute: stage 1 is fed one message per 2.
  const ExecResult g = schedule_execute(schedule_make(ScheduleKind::GPipe, 2, 3, 1),
                                        CostTable::uniform(2, 1, 1, 1, 2));
  ASSERT_TRUE(g.completed);
  // Activations land at 3, 5, 7; forwards on stage 1 end at 8; backwards B2 B1 B0 end 9, 10, 11;
  // gradients land at 11, 13, 15; stage 0's backwards end at 12, 14, 16.
  EXPECT_DOUBLE_EQ(g.makespan, 16.0);
}

TEST(Schedule, ValidateCatchesBrokenLists) {
  auto expect_invalid = [](Schedule s, const std::string &needle) {
    try {
      schedule_validate(s);
      ADD_FAILURE() << "no error, expected: " << needle;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const Schedule good = schedule_make(ScheduleKind::Seq1F1B, 2, 2, 2);
  ASSERT_NO_THROW(schedule_validate(good));
  {
    Schedule s = good;  // a missing backward
    auto &a = s.stages[1];
    a.erase(std::find(a.begin(), a.end(), Action{Op::Backward, 1, 0, -1}));
    expect_invalid(s, "stage 1: the backward of micro-batch 1 chunk 0 is missing");
  }
  {
    Schedule s = good;  // a duplicated forward
    s.stages[0].push_back({Op::Forward, 0, 1, -1});
    expect_invalid(s, "appears twice");
  }
  {
    Schedule s = good;  // backward of chunk 0 before chunk 1 of the same micro-batch
    auto &a = s.stages[0];
    std::iter_swap(std::find(a.begin(), a.end(), Action{Op::Backward, 0, 1, -1}),
                   std::find(a.begin(), a.end(), Action{Op::Backward, 0, 0, -1}));
    expect_invalid(s, "later chunks add to the key/value gradients of earlier ones");
  }
  {
    Schedule s = good;  // forwards of one micro-batch out of chunk order
    auto &a = s.stages[1];
    std::iter_swap(std::find(a.begin(), a.end(), Action{Op::Forward, 1, 0, -1}),
                   std::find(a.begin(), a.end(), Action{Op::Forward, 1, 1, -1}));
    expect_invalid(s, "attends to the keys and values of the chunks before it");
  }
  {
    Schedule s = good;  // a send on the last stage
    s.stages[1].push_back({Op::SendAct, 0, 0, 2});
    expect_invalid(s, "expected none (last stage)");
  }
  {
    Schedule s = good;  // a backward before its forward
    auto &a = s.stages[1];
    std::iter_swap(std::find(a.begin(), a.end(), Action{Op::Forward, 0, 1, -1}),
                   std::find(a.begin(), a.end(), Action{Op::Backward, 0, 1, -1}));
    expect_invalid(s, "a backward needs its forward");
  }
  {
    Schedule s = good;
    s.stages.pop_back();
    expect_invalid(s, "lists 1 stages, expected 2");
  }
  EXPECT_THROW(schedule_make(ScheduleKind::OneFOneB, 4, 4, 2), Error);
  EXPECT_THROW(schedule_make(ScheduleKind::Seq1F1B, 0, 4, 2), Error);
  EXPECT_THROW(schedule_make(ScheduleKind::Seq1F1B, 4, 0, 2), Error);
  EXPECT_THROW(schedule_kind_parse("zb-h1"), Error);
}

TEST(Schedule, ExecutorReportsADeadlockInAValidLookingList) {
  // Stage 0 waits for gradient 0 before computing forward 0: every action is there and in an
  // allowed per-action order, but the two stages wait for each other.
  Schedule s;
  s.kind = ScheduleKind::OneFOneB;
  s.n_stage = 2;
  s.n_micro = 1;
  s.n_chunk = 1;
  s.stages = {
      {{Op::RecvGrad, 0, 0, 1}, {Op::Forward, 0, 0}, {Op::SendAct, 0, 0, 1}, {Op::Backward, 0, 0}},
      {{Op::RecvAct, 0, 0, 0}, {Op::Forward, 0, 0}, {Op::Backward, 0, 0}, {Op::SendGrad, 0, 0, 0}}};
  ASSERT_NO_THROW(schedule_validate(s));
  for (SendMode mode : {SendMode::Buffered, SendMode::Rendezvous}) {
    const ExecResult r = schedule_execute(s, CostTable::uniform(2, 1, 1, 1), mode);
    EXPECT_FALSE(r.completed);
    EXPECT_EQ(r.stall, "stage 0 waits at action 0 (rg0<1); stage 1 waits at action 0 (ra0<0)");
  }
}

TEST(Schedule, TimelineDrawsTheBubble) {
  const Schedule s = schedule_make(ScheduleKind::OneFOneB, 2, 2, 1);
  const ExecResult r = schedule_execute(s, CostTable::uniform(2, 1, 1, 1));
  EXPECT_EQ(schedule_timeline(s, r),
            "stage 0 |AB.a.b|\n"
            "stage 1 |.AaBb.|\n");
}

}  // namespace
}  // namespace lmkit::parallel
