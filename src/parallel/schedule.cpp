// Pipeline schedules as data: the GPipe / 1F1B / Seq1F1B generators, communication placement,
// validation and the discrete-event executor (see schedule.h). Seq1F1B follows Sun et al.,
// NAACL 2025 (arXiv:2406.03488). Not an MPI executor: nothing here sends a byte.
#include "parallel/schedule.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "core/error.h"

namespace lmkit::parallel {

namespace {

const char *op_tag(Op op) {
  switch (op) {
    case Op::Forward:
      return "F";
    case Op::Backward:
      return "B";
    case Op::SendAct:
      return "sa";
    case Op::RecvAct:
      return "ra";
    case Op::SendGrad:
      return "sg";
    case Op::RecvGrad:
      return "rg";
  }
  return "?";
}

const char *op_words(Op op) {
  switch (op) {
    case Op::Forward:
      return "forward";
    case Op::Backward:
      return "backward";
    case Op::SendAct:
      return "send of the activation";
    case Op::RecvAct:
      return "receive of the activation";
    case Op::SendGrad:
      return "send of the gradient";
    case Op::RecvGrad:
      return "receive of the gradient";
  }
  return "?";
}

// The receive matching a send and the other way round.
Op counterpart(Op op) {
  switch (op) {
    case Op::SendAct:
      return Op::RecvAct;
    case Op::RecvAct:
      return Op::SendAct;
    case Op::SendGrad:
      return Op::RecvGrad;
    case Op::RecvGrad:
      return Op::SendGrad;
    default:
      return op;
  }
}

void check_dims(int p, int m, int k) {
  LMKIT_CHECK(p >= 1, "the pipeline needs at least 1 stage (got ", p, ")");
  LMKIT_CHECK(m >= 1, "the step needs at least 1 micro-batch (got ", m, ")");
  LMKIT_CHECK(k >= 1, "a micro-batch needs at least 1 sequence chunk (got ", k, ")");
}

// Index of a message (activation or gradient of (mb, chunk) leaving stage src).
struct MsgIndex {
  int p, m, k;
  size_t operator()(bool grad, int src, int mb, int chunk) const {
    return ((size_t(grad) * size_t(p) + size_t(src)) * size_t(m) + size_t(mb)) * size_t(k) +
           size_t(chunk);
  }
  size_t size() const { return 2 * size_t(p) * size_t(m) * size_t(k); }
};

bool is_grad(Op op) {
  return op == Op::SendGrad || op == Op::RecvGrad;
}

// Receives before each compute that needs an input, sends after each compute whose output another
// stage needs.
std::vector<std::vector<Action>> place_just_in_time(const std::vector<std::vector<Action>> &order) {
  const int p = int(order.size());
  std::vector<std::vector<Action>> out(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    for (const Action &a : order[size_t(s)]) {
      if (a.op == Op::Forward && s > 0)
        out[size_t(s)].push_back({Op::RecvAct, a.mb, a.chunk, s - 1});
      if (a.op == Op::Backward && s < p - 1)
        out[size_t(s)].push_back({Op::RecvGrad, a.mb, a.chunk, s + 1});
      out[size_t(s)].push_back(a);
      if (a.op == Op::Forward && s < p - 1)
        out[size_t(s)].push_back({Op::SendAct, a.mb, a.chunk, s + 1});
      if (a.op == Op::Backward && s > 0)
        out[size_t(s)].push_back({Op::SendGrad, a.mb, a.chunk, s - 1});
    }
  }
  return out;
}

// Every stage does its sends and receives in one global order of messages, keyed by (when the
// message's consumer starts in a unit-cost run, the consumer's stage); see
// CommPlacement::Rendezvous. A key is valid when, on every stage, the message a compute receives
// sorts before every message that compute or a later one sends. The consumer's start is: what
// compute i sends is consumed after compute i ends, hence after the start of any compute j <= i
// on this stage. Ties (a gradient and an activation crossing one link at the same moment) go
// gradient first, the order of Megatron's send_forward_recv_backward.
std::vector<std::vector<Action>> place_rendezvous(const Schedule &jit) {
  const int p = jit.n_stage, m = jit.n_micro, k = jit.n_chunk;
  const ExecResult ref =
      schedule_execute(jit, CostTable::uniform(p, k, 1.0, 2.0), SendMode::Buffered);
  LMKIT_CHECK(ref.completed, "internal: the compute order deadlocks: ", ref.stall);
  // start[s][fwd/bwd][mb][chunk]: when each compute starts in the reference run.
  std::vector<double> start(size_t(p) * 2 * size_t(m) * size_t(k), 0.0);
  auto start_at = [&](int s, bool bwd, int mb, int c) -> double & {
    return start[((size_t(s) * 2 + size_t(bwd)) * size_t(m) + size_t(mb)) * size_t(k) + size_t(c)];
  };
  for (int s = 0; s < p; ++s) {
    const auto &acts = jit.stages[size_t(s)];
    for (size_t i = 0; i < acts.size(); ++i)
      if (op_is_compute(acts[i].op))
        start_at(s, acts[i].op == Op::Backward, acts[i].mb, acts[i].chunk) =
            ref.timing[size_t(s)][i].start;
  }
  std::vector<std::vector<Action>> out(static_cast<size_t>(p));
  for (int s = 0; s < p; ++s) {
    struct Comm {
      double key_time;
      int key_stage;
      Action a;
      int compute;  // producer (send) or consumer (receive): index among the stage's computes
    };
    std::vector<Action> computes;
    std::vector<Comm> comms;
    for (const Action &a : jit.stages[size_t(s)]) {
      if (!op_is_compute(a.op)) continue;
      const int j = int(computes.size());
      computes.push_back(a);
      const int mb = a.mb, c = a.chunk;
      if (a.op == Op::Forward) {
        if (s > 0) comms.push_back({start_at(s, false, mb, c), s, {Op::RecvAct, mb, c, s - 1}, j});
        if (s < p - 1)
          comms.push_back({start_at(s + 1, false, mb, c), s + 1, {Op::SendAct, mb, c, s + 1}, j});
      } else {
        if (s < p - 1)
          comms.push_back({start_at(s, true, mb, c), s, {Op::RecvGrad, mb, c, s + 1}, j});
        if (s > 0)
          comms.push_back({start_at(s - 1, true, mb, c), s - 1, {Op::SendGrad, mb, c, s - 1}, j});
      }
    }
    std::sort(comms.begin(), comms.end(), [](const Comm &x, const Comm &y) {
      return std::tie(x.key_time, x.key_stage) < std::tie(y.key_time, y.key_stage);
    });
    // Rank of each compute's receive in the key order (a compute has at most one input).
    std::vector<int> recv_rank(computes.size(), -1);
    for (size_t i = 0; i < comms.size(); ++i)
      if (op_is_recv(comms[i].a.op)) recv_rank[size_t(comms[i].compute)] = int(i);
    auto &dst = out[size_t(s)];
    size_t next = 0;
    auto emit = [&](int computed) {  // `computed`: how many of the stage's computes have run
      const Comm &c = comms[next++];
      // A send can only go out once its producer has run; the key order guarantees it.
      LMKIT_CHECK(!op_is_send(c.a.op) || c.compute < computed, "internal: stage ", s,
                  " would send ", action_name(c.a), " before computing it");
      dst.push_back(c.a);
    };
    auto flush_sends = [&](int computed) {
      while (next < comms.size() && op_is_send(comms[next].a.op) && comms[next].compute < computed)
        emit(computed);
    };
    for (int j = 0; j < int(computes.size()); ++j) {
      // Receive this compute's input (and whatever sorts before it), then send what is ready.
      if (recv_rank[size_t(j)] >= 0)
        while (int(next) <= recv_rank[size_t(j)]) emit(j);
      flush_sends(j);
      dst.push_back(computes[size_t(j)]);
      flush_sends(j + 1);
    }
    while (next < comms.size()) emit(int(computes.size()));
  }
  return out;
}

}  // namespace

std::string action_name(const Action &a, bool with_chunk) {
  std::string s = str_cat(op_tag(a.op), a.mb);
  if (with_chunk) s += str_cat(".", a.chunk);
  if (op_is_send(a.op)) s += str_cat(">", a.peer);
  if (op_is_recv(a.op)) s += str_cat("<", a.peer);
  return s;
}

ScheduleKind schedule_kind_parse(std::string_view s) {
  if (s == "gpipe") return ScheduleKind::GPipe;
  if (s == "1f1b") return ScheduleKind::OneFOneB;
  if (s == "seq1f1b") return ScheduleKind::Seq1F1B;
  fail("unknown schedule '", s, "' (use gpipe, 1f1b or seq1f1b)");
}

const char *schedule_kind_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::GPipe:
      return "gpipe";
    case ScheduleKind::OneFOneB:
      return "1f1b";
    case ScheduleKind::Seq1F1B:
      return "seq1f1b";
  }
  return "?";
}

int seq1f1b_warmup(int p, int r, int m, int k) {
  return std::min((p - r - 1) + (k - 1), m * k);
}

std::vector<std::vector<Action>> compute_order(ScheduleKind kind, int p, int m, int k) {
  check_dims(p, m, k);
  LMKIT_CHECK(kind != ScheduleKind::OneFOneB || k == 1, "1F1B runs whole micro-batches (got ", k,
              " sequence chunks); 1F1B over sequence chunks is Seq1F1B");
  // Forward units in (mb, chunk) order; backward units: last chunk of the oldest micro-batch
  // first (for GPipe: the exact reverse of the forwards).
  std::vector<Action> fwd, bwd;
  for (int mb = 0; mb < m; ++mb)
    for (int c = 0; c < k; ++c) fwd.push_back({Op::Forward, mb, c});
  if (kind == ScheduleKind::GPipe) {
    for (auto it = fwd.rbegin(); it != fwd.rend(); ++it)
      bwd.push_back({Op::Backward, it->mb, it->chunk});
  } else {
    for (int mb = 0; mb < m; ++mb)
      for (int c = k - 1; c >= 0; --c) bwd.push_back({Op::Backward, mb, c});
  }
  const int units = m * k;
  std::vector<std::vector<Action>> order(static_cast<size_t>(p));
  for (int r = 0; r < p; ++r) {
    auto &o = order[size_t(r)];
    if (kind == ScheduleKind::GPipe) {
      o = fwd;
      o.insert(o.end(), bwd.begin(), bwd.end());
      continue;
    }
    const int w = seq1f1b_warmup(p, r, m, k);
    for (int i = 0; i < w; ++i) o.push_back(fwd[size_t(i)]);
    for (int i = 0; i < units - w; ++i) {
      o.push_back(fwd[size_t(w + i)]);
      o.push_back(bwd[size_t(i)]);
    }
    for (int i = units - w; i < units; ++i) o.push_back(bwd[size_t(i)]);
  }
  return order;
}

Schedule schedule_make(ScheduleKind kind, int p, int m, int k, CommPlacement place) {
  Schedule s;
  s.kind = kind;
  s.n_stage = p;
  s.n_micro = m;
  s.n_chunk = k;
  s.stages = place_just_in_time(compute_order(kind, p, m, k));
  if (place == CommPlacement::Rendezvous) s.stages = place_rendezvous(s);
  return s;
}

void schedule_validate(const Schedule &s) {
  const int p = s.n_stage, m = s.n_micro, k = s.n_chunk;
  check_dims(p, m, k);
  LMKIT_CHECK(int(s.stages.size()) == p, "the schedule lists ", s.stages.size(),
              " stages, expected ", p);
  constexpr int kOps = 6;
  for (int st = 0; st < p; ++st) {
    const auto &acts = s.stages[size_t(st)];
    // pos[op][mb][chunk]: index of that action on this stage, -1 when absent.
    std::vector<int> pos(size_t(kOps) * size_t(m) * size_t(k), -1);
    auto at = [&](Op op, int mb, int c) -> int & {
      return pos[(size_t(op) * size_t(m) + size_t(mb)) * size_t(k) + size_t(c)];
    };
    for (int i = 0; i < int(acts.size()); ++i) {
      const Action &a = acts[size_t(i)];
      LMKIT_CHECK(a.mb >= 0 && a.mb < m && a.chunk >= 0 && a.chunk < k, "stage ", st, " action ", i,
                  " (", action_name(a), ") names micro-batch ", a.mb, " chunk ", a.chunk,
                  " outside ", m, " x ", k);
      int want_peer = -1;
      if (a.op == Op::SendAct || a.op == Op::RecvGrad) want_peer = st + 1;
      if (a.op == Op::RecvAct || a.op == Op::SendGrad) want_peer = st - 1;
      LMKIT_CHECK(a.peer == want_peer && want_peer < p, "stage ", st, " action ", i, " (",
                  action_name(a), ") has peer ", a.peer, ", expected ",
                  want_peer >= p ? std::string("none (last stage)") : str_cat(want_peer));
      int &slot = at(a.op, a.mb, a.chunk);
      LMKIT_CHECK(slot < 0, "stage ", st, ": the ", op_words(a.op), " of micro-batch ", a.mb,
                  " chunk ", a.chunk, " appears twice (actions ", slot, " and ", i, ")");
      slot = i;
    }
    // Presence first, then the order of the computes, then the sends and receives around them.
    for (int mb = 0; mb < m; ++mb)
      for (int c = 0; c < k; ++c) {
        auto need = [&](Op op, bool wanted) {
          const bool has = at(op, mb, c) >= 0;
          LMKIT_CHECK(has == wanted, "stage ", st, ": the ", op_words(op), " of micro-batch ", mb,
                      " chunk ", c, has ? " should not be there" : " is missing");
        };
        need(Op::Forward, true);
        need(Op::Backward, true);
        need(Op::RecvAct, st > 0);
        need(Op::SendGrad, st > 0);
        need(Op::SendAct, st < p - 1);
        need(Op::RecvGrad, st < p - 1);
      }
    for (int pass = 0; pass < 2; ++pass)
      for (int mb = 0; mb < m; ++mb)
        for (int c = 0; c < k; ++c) {
          auto before = [&](Op a, int ca, Op b, int cb, const char *why) {
            const int ia = at(a, mb, ca), ib = at(b, mb, cb);
            if (ia < 0 || ib < 0) return;
            LMKIT_CHECK(ia < ib, "stage ", st, ": the ", op_words(b), " of micro-batch ", mb,
                        " chunk ", cb, " (action ", ib, ") comes before the ", op_words(a),
                        " of chunk ", ca, " (action ", ia, "): ", why);
          };
          if (pass == 0) {
            before(Op::Forward, c, Op::Backward, c, "a backward needs its forward");
            if (c > 0)
              before(Op::Forward, c - 1, Op::Forward, c,
                     "a chunk attends to the keys and values of the chunks before it");
            if (c + 1 < k)
              before(Op::Backward, c + 1, Op::Backward, c,
                     "later chunks add to the key/value gradients of earlier ones");
          } else {
            before(Op::RecvAct, c, Op::Forward, c, "a forward needs its input");
            before(Op::Forward, c, Op::SendAct, c, "an activation is sent once computed");
            before(Op::RecvGrad, c, Op::Backward, c, "a backward needs its output's gradient");
            before(Op::Backward, c, Op::SendGrad, c, "a gradient is sent once computed");
          }
        }
  }
}

std::vector<int> schedule_peak_inflight(const Schedule &s) {
  std::vector<int> peak;
  for (const auto &acts : s.stages) {
    int now = 0, top = 0;
    for (const Action &a : acts) {
      if (a.op == Op::Forward) top = std::max(top, ++now);
      if (a.op == Op::Backward) --now;
    }
    peak.push_back(top);
  }
  return peak;
}

double bubble_closed_form(int p, int m, int k) {
  return double(p - 1) / double(m * k + p - 1);
}

CostTable CostTable::uniform(int p, int k, double f, double b, double x) {
  CostTable c;
  c.fwd.assign(size_t(p), std::vector<double>(size_t(k), f));
  c.bwd.assign(size_t(p), std::vector<double>(size_t(k), b));
  c.xfer.assign(size_t(std::max(p - 1, 0)), std::vector<double>(size_t(k), x));
  return c;
}

double ExecResult::bubble_fraction() const {
  if (busy.empty() || makespan <= 0) return 0.0;
  double sum = 0;
  for (double b : busy) sum += b;
  return 1.0 - sum / (double(busy.size()) * makespan);
}

ExecResult schedule_execute(const Schedule &s, const CostTable &costs, SendMode mode) {
  const int p = s.n_stage, m = s.n_micro, k = s.n_chunk;
  check_dims(p, m, k);
  LMKIT_CHECK(int(s.stages.size()) == p, "the schedule lists ", s.stages.size(),
              " stages, expected ", p);
  auto dims_ok = [&](const std::vector<std::vector<double>> &t, int rows) {
    if (int(t.size()) != rows) return false;
    for (const auto &r : t)
      if (int(r.size()) != k) return false;
    return true;
  };
  LMKIT_CHECK(dims_ok(costs.fwd, p) && dims_ok(costs.bwd, p) && dims_ok(costs.xfer, p - 1),
              "the cost table must be (", p, " x ", k, ") for compute and (", p - 1, " x ", k,
              ") for transfers");
  for (const auto &acts : s.stages)
    for (const Action &a : acts)
      LMKIT_CHECK(a.mb >= 0 && a.mb < m && a.chunk >= 0 && a.chunk < k &&
                      (op_is_compute(a.op) || (a.peer >= 0 && a.peer < p)),
                  "action ", action_name(a), " is outside the ", p, " x ", m, " x ", k,
                  " schedule");

  ExecResult r;
  r.timing.resize(size_t(p));
  for (int st = 0; st < p; ++st) r.timing[size_t(st)].resize(s.stages[size_t(st)].size());
  r.busy.assign(size_t(p), 0.0);
  std::vector<size_t> pc(size_t(p), 0);
  std::vector<double> clock(size_t(p), 0.0);
  const MsgIndex msg{p, m, k};
  std::vector<double> arrival(msg.size(), -1.0);      // buffered: when each message lands
  std::vector<double> link_free(2 * size_t(p), 0.0);  // per sender and direction
  auto link_of = [&](int src, int dst) { return size_t(src) * 2 + size_t(dst > src); };
  auto xfer = [&](int src, int dst, int chunk) {
    return costs.xfer[size_t(std::min(src, dst))][size_t(chunk)];
  };
  auto transfer = [&](int src, int dst, int chunk, double ready) {
    const size_t l = link_of(src, dst);
    const double t = std::max(ready, link_free[l]) + xfer(src, dst, chunk);
    link_free[l] = t;
    return t;
  };

  for (;;) {
    bool progress = false, done = true;
    for (int st = 0; st < p; ++st) {
      const auto &acts = s.stages[size_t(st)];
      while (pc[size_t(st)] < acts.size()) {
        const size_t i = pc[size_t(st)];
        const Action &a = acts[i];
        Interval &t = r.timing[size_t(st)][i];
        double &now = clock[size_t(st)];
        if (op_is_compute(a.op)) {
          const double cost =
              (a.op == Op::Forward ? costs.fwd : costs.bwd)[size_t(st)][size_t(a.chunk)];
          t = {now, now + cost};
          now += cost;
          r.busy[size_t(st)] += cost;
        } else if (mode == SendMode::Buffered) {
          const int src = op_is_send(a.op) ? st : a.peer;
          const size_t id = msg(is_grad(a.op), src, a.mb, a.chunk);
          if (op_is_send(a.op)) {
            arrival[id] = transfer(st, a.peer, a.chunk, now);
            t = {now, now};
          } else {
            if (arrival[id] < 0) break;  // not sent yet: wait
            t = {now, std::max(now, arrival[id])};
            now = t.end;
          }
        } else {
          // Rendezvous: both ends must stand at the matching pair of actions.
          const size_t pi = pc[size_t(a.peer)];
          const auto &peer_acts = s.stages[size_t(a.peer)];
          if (pi >= peer_acts.size()) break;
          const Action &b = peer_acts[pi];
          if (b.op != counterpart(a.op) || b.mb != a.mb || b.chunk != a.chunk || b.peer != st)
            break;
          const int src = op_is_send(a.op) ? st : a.peer, dst = op_is_send(a.op) ? a.peer : st;
          const double ready = std::max(now, clock[size_t(a.peer)]);
          const double end = transfer(src, dst, a.chunk, ready);
          t = {now, end};
          r.timing[size_t(a.peer)][pi] = {clock[size_t(a.peer)], end};
          now = end;
          clock[size_t(a.peer)] = end;
          ++pc[size_t(a.peer)];
        }
        ++pc[size_t(st)];
        progress = true;
      }
      done = done && pc[size_t(st)] == acts.size();
    }
    if (done) {
      r.completed = true;
      break;
    }
    if (!progress) {
      for (int st = 0; st < p; ++st) {
        const auto &acts = s.stages[size_t(st)];
        if (pc[size_t(st)] == acts.size()) continue;
        r.stall += str_cat(r.stall.empty() ? "" : "; ", "stage ", st, " waits at action ",
                           pc[size_t(st)], " (", action_name(acts[pc[size_t(st)]], k > 1), ")");
      }
      break;
    }
  }
  r.finish = clock;
  for (double c : clock) r.makespan = std::max(r.makespan, c);
  return r;
}

std::string schedule_format(const Schedule &s, bool with_comm) {
  std::string out;
  for (int st = 0; st < s.n_stage; ++st) {
    out += str_cat("stage ", st, ":");
    for (const Action &a : s.stages[size_t(st)])
      if (with_comm || op_is_compute(a.op)) out += " " + action_name(a, s.n_chunk > 1);
    out += "\n";
  }
  return out;
}

std::string schedule_timeline(const Schedule &s, const ExecResult &r, int width) {
  // One column per shortest compute when that fits, else makespan / width per column.
  double shortest = 0;
  for (int st = 0; st < s.n_stage; ++st)
    for (size_t i = 0; i < s.stages[size_t(st)].size(); ++i)
      if (op_is_compute(s.stages[size_t(st)][i].op)) {
        const double d = r.timing[size_t(st)][i].end - r.timing[size_t(st)][i].start;
        if (d > 0 && (shortest == 0 || d < shortest)) shortest = d;
      }
  if (shortest == 0 || r.makespan <= 0) return "";
  width = std::max(width, 1);
  // Costs that differ by a hair (attention on later chunks) should not add a column.
  const double units = r.makespan / shortest;
  int cols =
      int(std::fabs(units - std::round(units)) < 0.01 ? std::round(units) : std::ceil(units));
  double step = shortest;
  if (cols > width) cols = width, step = r.makespan / width;
  std::string out;
  for (int st = 0; st < s.n_stage; ++st) {
    std::string row(size_t(cols), '.');
    const auto &acts = s.stages[size_t(st)];
    for (size_t i = 0; i < acts.size(); ++i) {
      if (!op_is_compute(acts[i].op)) continue;
      const Interval &t = r.timing[size_t(st)][i];
      const char c = char((acts[i].op == Op::Forward ? 'A' : 'a') + acts[i].mb % 26);
      for (int col = 0; col < cols; ++col) {
        const double mid = (col + 0.5) * step;
        if (mid >= t.start && mid < t.end) row[size_t(col)] = c;
      }
    }
    out += str_cat("stage ", st, " |", row, "|\n");
  }
  return out;
}

}  // namespace lmkit::parallel
