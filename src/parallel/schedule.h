// Pipeline schedules as data: for every stage, the ordered list of actions (forward / backward of
// one chunk of one micro-batch, send / receive of an activation or a gradient). Generators for
// GPipe, 1F1B and Seq1F1B, a structural validator, and a discrete-event executor that plays the
// lists with blocking point-to-point semantics and a cost table (deadlocks are reported, not hung).
// Not an MPI executor and not a model: nothing here moves a tensor; parallel/pipeline.h runs these
// lists over real ranks (see docs/PARALLEL.md).
//
// Seq1F1B is from Sun et al., "Seq1F1B: Efficient Sequence-Level Pipeline Parallelism for Large
// Language Model Training", NAACL 2025 (arXiv:2406.03488): each micro-batch is split into k
// sequence chunks; forwards run in chunk order, and because chunk i attends to chunks 0..i of its
// micro-batch, a stage runs the backward of a micro-batch's chunks last-first. Its 1F1B queue
// pops "the last chunk of the oldest micro-batch", and stage r warms up with (p - r - 1) + (k - 1)
// chunk forwards (the authors' Megatron code: p - r + k - 2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lmkit::parallel {

enum class Op : uint8_t {
  Forward,   // run the stage's layers on (mb, chunk)
  Backward,  // backward of the stage's layers for (mb, chunk)
  SendAct,   // send (mb, chunk)'s output activation to stage peer (= this + 1)
  RecvAct,   // receive (mb, chunk)'s input activation from stage peer (= this - 1)
  SendGrad,  // send the gradient of (mb, chunk)'s input to stage peer (= this - 1)
  RecvGrad,  // receive the gradient of (mb, chunk)'s output from stage peer (= this + 1)
};

inline bool op_is_compute(Op op) {
  return op == Op::Forward || op == Op::Backward;
}
inline bool op_is_send(Op op) {
  return op == Op::SendAct || op == Op::SendGrad;
}
inline bool op_is_recv(Op op) {
  return op == Op::RecvAct || op == Op::RecvGrad;
}

struct Action {
  Op op;
  int32_t mb;
  int32_t chunk;
  int32_t peer = -1;  // the other stage of a send / receive; -1 for compute
  bool operator==(const Action &) const = default;
};

std::string action_name(const Action &a, bool with_chunk = true);  // "F3.1", "sa3.1>2", "rg0<3"

enum class ScheduleKind { GPipe, OneFOneB, Seq1F1B };
ScheduleKind schedule_kind_parse(std::string_view s);  // "gpipe" | "1f1b" | "seq1f1b"
const char *schedule_kind_name(ScheduleKind k);

// Where the send / receive actions go around the compute actions.
enum class CommPlacement {
  // Each receive right before the compute that needs it, each send right after the compute that
  // produced it. Deadlock-free when sends do not wait for the receiver (MPI_Isend, buffered
  // MPI_Send); with synchronous sends, 1F1B's steady state deadlocks (both neighbours send at
  // once). The simulator and lmkit train --pp (run_stage's sends do not block) use it.
  JustInTime,
  // Every stage does its sends and receives in one global order of messages (each message keyed
  // by when its consumer starts in a unit-cost run), receives as late and sends as early as that
  // order allows. Deadlock-free even with synchronous (rendezvous) sends, whatever the costs: the
  // unfinished message with the smallest key always has both ends ready. The default, for
  // executors whose sends wait for their receiver.
  Rendezvous,
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::OneFOneB;
  int n_stage = 0;                          // p
  int n_micro = 0;                          // m
  int n_chunk = 1;                          // k (sequence chunks per micro-batch)
  std::vector<std::vector<Action>> stages;  // (p): each stage's actions, in order
};

// Warmup forwards of Seq1F1B on stage r (in chunks): min((p - r - 1) + (k - 1), m k). With k = 1
// it is 1F1B's min(p - r - 1, m).
int seq1f1b_warmup(int p, int r, int m, int k);

// The compute actions of every stage, in order, without communication.
//  GPipe:   all forwards in (mb, chunk) order, then all backwards in the reverse order.
//  1F1B:    k must be 1. Warmup p - r - 1 forwards, then one forward / one backward, then the
//           remaining backwards (Narayanan et al., PipeDream-Flush / Megatron-LM).
//  Seq1F1B: the same over m k chunk units with the Seq1F1B warmup; backwards pop the last chunk of
//           the oldest micro-batch.
std::vector<std::vector<Action>> compute_order(ScheduleKind kind, int p, int m, int k);

// A full schedule: compute order plus the sends and receives, placed as asked. Throws
// lmkit::Error for p, m or k below 1, or 1F1B with k > 1.
Schedule schedule_make(ScheduleKind kind, int p, int m, int k,
                       CommPlacement place = CommPlacement::Rendezvous);

// Structural checks, throwing lmkit::Error on the first problem with the stage and action:
// every (mb, chunk) forward and backward exactly once per stage; on a stage, forward before its
// backward, forwards of a micro-batch in chunk order, backwards last chunk first; every stage but
// the first receives each activation once, before its forward; every stage but the last sends
// each activation once, after its forward (the same for gradients, the other way).
void schedule_validate(const Schedule &s);

// Per stage, the most chunks whose forward has run and backward has not (counted at each
// forward): the activation memory a schedule needs, in chunks.
std::vector<int> schedule_peak_inflight(const Schedule &s);

// (p - 1) / (m k + p - 1): the bubble of GPipe and 1F1B (k = 1) and of Seq1F1B with equal chunk
// costs, when communication is free.
double bubble_closed_form(int p, int m, int k);

// Durations for the executor, in any time unit.
struct CostTable {
  std::vector<std::vector<double>> fwd, bwd;  // (p, k): one chunk of one micro-batch
  std::vector<std::vector<double>> xfer;      // (p - 1, k): chunk c's activation or gradient
                                              // over the link between stages s and s + 1
  // Same forward and backward cost for every stage and chunk; transfers cost `x`.
  static CostTable uniform(int p, int k, double f, double b, double x = 0);
};

enum class SendMode {
  Buffered,    // a send returns at once; the message arrives after its transfer
  Rendezvous,  // a send waits until the receiver posts the matching receive (MPI_Ssend)
};

struct Interval {
  double start = 0, end = 0;
};

struct ExecResult {
  bool completed = false;
  std::string stall;                          // when !completed: what every stuck stage waits for
  double makespan = 0;                        // the last action's end
  std::vector<std::vector<Interval>> timing;  // parallel to Schedule::stages
  std::vector<double> busy;                   // (p): compute time per stage
  std::vector<double> finish;                 // (p): when each stage ends its last action
  // 1 - sum(busy) / (p * makespan): the idle share of the pipeline's device time.
  double bubble_fraction() const;
};

// Plays the schedule: a stage runs its actions in order, a compute takes its cost, a receive
// blocks until its message has arrived, a send blocks as the mode says; messages on one link
// direction go one at a time. Returns completed = false (with the stuck actions) on deadlock.
ExecResult schedule_execute(const Schedule &s, const CostTable &costs,
                            SendMode mode = SendMode::Buffered);

// One line per stage: "stage 0: F0 F1 B0 ..." (with the sends and receives when with_comm).
std::string schedule_format(const Schedule &s, bool with_comm = false);
// A text timeline of an executed schedule, one row per stage, at most `width` columns: a forward
// of micro-batch i is drawn with the i-th letter in upper case, its backward in lower case, idle
// time as '.'.
std::string schedule_timeline(const Schedule &s, const ExecResult &r, int width = 120);

}  // namespace lmkit::parallel
