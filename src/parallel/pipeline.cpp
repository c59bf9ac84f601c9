// The pipeline executor: plays one stage's action list with MPI messages.
#include "parallel/pipeline.h"

#include <map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/timer.h"

namespace lmkit::parallel {

namespace {

// One tag per message: (unit, kind), unit = mb * k + chunk.
int tag_of(const Schedule &s, const Action &a, bool grad) {
  return (a.mb * s.n_chunk + a.chunk) * 2 + (grad ? 1 : 0);
}

}  // namespace

StageReport run_stage(const Schedule &s, mpi::Comm &pp, PipelineStage &m) {
  LMKIT_CHECK(pp.size() == s.n_stage, "pipeline: the schedule has ", s.n_stage,
              " stages but the pipeline group has ", pp.size(), " ranks");
  const int stage = pp.rank(), last = s.n_stage - 1;
  using Key = std::pair<int, int>;
  std::map<Key, std::vector<float>> act_in, act_out, grad_in, grad_out;
  auto take = [](std::map<Key, std::vector<float>> &from, Key k, const char *what) {
    auto it = from.find(k);
    LMKIT_CHECK(it != from.end(), "pipeline: stage has no ", what, " for micro-batch ", k.first,
                " chunk ", k.second, " (the schedule is out of order)");
    std::vector<float> v = std::move(it->second);
    from.erase(it);
    return v;
  };
  // Sends do not wait for their receiver (MPI_Isend): each buffer stays here until its send is
  // done, which is checked after every compute and at the end of the step.
  std::vector<std::pair<mpi::Request, std::vector<float>>> sending;
  auto send = [&](std::vector<float> buf, int peer, int tag) {
    mpi::Request req = pp.isend(buf, peer, tag);
    sending.emplace_back(std::move(req), std::move(buf));  // the move keeps the buffer in place
  };
  auto reap = [&] { std::erase_if(sending, [](auto &s) { return s.first.test(); }); };
  StageReport r;
  int inflight = 0;
  const double t0 = now_seconds();
  for (const Action &a : s.stages[size_t(stage)]) {
    const Key key{a.mb, a.chunk};
    const size_t n = size_t(m.boundary_floats(a.mb, a.chunk));
    switch (a.op) {
      case Op::RecvAct: {
        std::vector<float> &buf = act_in[key];
        buf.resize(n);
        pp.recv(buf, a.peer, tag_of(s, a, false));
        break;
      }
      case Op::RecvGrad: {
        std::vector<float> &buf = grad_in[key];
        buf.resize(n);
        pp.recv(buf, a.peer, tag_of(s, a, true));
        break;
      }
      case Op::SendAct:
        send(take(act_out, key, "activation to send"), a.peer, tag_of(s, a, false));
        break;
      case Op::SendGrad:
        send(take(grad_out, key, "gradient to send"), a.peer, tag_of(s, a, true));
        break;
      case Op::Forward: {
        std::vector<float> in =
            stage > 0 ? take(act_in, key, "input activation") : std::vector<float>();
        std::vector<float> &out = act_out[key];
        if (stage < last) out.resize(n);
        const double c0 = now_seconds();
        m.forward(a.mb, a.chunk, in, out);
        r.busy_s += now_seconds() - c0;
        if (stage == last) act_out.erase(key);
        r.peak_inflight = std::max(r.peak_inflight, ++inflight);
        r.peak_activation_bytes = std::max(r.peak_activation_bytes, m.activation_bytes());
        reap();
        break;
      }
      case Op::Backward: {
        std::vector<float> dout =
            stage < last ? take(grad_in, key, "output gradient") : std::vector<float>();
        std::vector<float> &din = grad_out[key];
        if (stage > 0) din.resize(n);
        const double c0 = now_seconds();
        m.backward(a.mb, a.chunk, dout, din);
        r.busy_s += now_seconds() - c0;
        if (stage == 0) grad_out.erase(key);
        --inflight;
        reap();
        break;
      }
    }
  }
  for (auto &[req, buf] : sending) pp.wait(req, "send");
  r.wall_s = now_seconds() - t0;
  r.idle_s = r.wall_s - r.busy_s;
  return r;
}

}  // namespace lmkit::parallel
