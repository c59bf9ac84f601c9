#!/usr/bin/env python3
"""Pipeline schedules measured over MPI ranks, next to the simulator calibrated on this machine.

Usage: bench/pipeline_vs_sim.py [BUILD_DIR] [--quick]

1. Calibrate: one process with one thread trains the whole model (no pipeline), two such
   processes at once (the stages will share the machine's memory system too), which gives a
   device's effective FLOP/s under the simulator's own FLOP model (simulated FLOPs of a step /
   measured step time). The activation bytes per token, layer and hidden unit come from a measured 1F1B
   run (stage 0's peak / its in-flight tokens x layers x hidden).
2. Time: `mpirun -np 2 lmkit train --pp 2` (2 ranks, one thread each, on 2 cores: honest times)
   for 1F1B and Seq1F1B k = 2, 4 (even and compute split). Measured: the pipeline's wall time per
   step (the slowest stage, first step excluded). Simulated: `lmkit simulate` with the calibrated
   FLOP/s. Error = simulated / measured - 1 (target |error| <= 15%).
3. Memory: `mpirun -np 4 lmkit train --pp 4` (4 ranks on 2 cores: memory is honest, time is not)
   for 1F1B and Seq1F1B k = 2, 4, 8 (even and compute): every stage's peak activation bytes,
   measured and simulated, and Seq1F1B's peak over 1F1B's on stage 0 (target k = 4: <= 0.6x).
4. Throughput at pp 4: the simulator, calibrated in 1, plays each schedule on the memory model
   (bubble against the closed form, step time, throughput over 1F1B's).

Prints Markdown tables (docs/PARALLEL.md shows one run). Takes a few minutes.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = next((a for a in sys.argv[1:] if not a.startswith("--")), "build")
QUICK = "--quick" in sys.argv
LMKIT = os.path.join(BUILD, "lmkit")
MPIRUN = ["mpirun", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])

# The timed model (pp 2) and the memory model (pp 4): llama, full attention heads (the simulator
# models multi-head attention), SwiGLU of width f (the simulator's two-matrix MLP of width 3f/2).
TIME = dict(layers=8, hidden=256, heads=8, ffn=512, seq=1024, micro=8, steps=3 if QUICK else 5)
MEM = dict(layers=8, hidden=512, heads=8, ffn=1024, seq=2048, micro=8, steps=2)
VOCAB = 512


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def data_dir(tmp):
    d = os.path.join(tmp, "data")
    run([LMKIT, "data", "stories", "--out", f"{tmp}/s.txt", "--bytes", "3000000", "--seed", "3"])
    run([LMKIT, "tokenizer", "train", "-i", f"{tmp}/s.txt", "-o", f"{tmp}/tok", "--vocab-size",
         str(VOCAB)])
    run([LMKIT, "data", "prepare", "--tokenizer", f"{tmp}/tok", "--input", f"{tmp}/s.txt", "--out",
         d, "--val-fraction", "0.01"])
    return d


def train_args(m, data, out):
    return ["train", "--data", data, "--out", out, "--family", "llama", "--n-layer",
            str(m["layers"]), "--n-embd", str(m["hidden"]), "--n-head", str(m["heads"]),
            "--n-head-kv", str(m["heads"]), "--n-ff", str(m["ffn"]), "--context", str(m["seq"]),
            "--batch-size", "1", "--micro-batches", str(m["micro"]), "--steps", str(m["steps"]),
            "--eval-batches", "0", "--ckpt-interval", "0", "--keep-ckpts", "1", "--threads", "1",
            "--warmup", "1", "--quiet"]


def simulate(m, pp, sched, k, split, flops=1.0, act_bytes=34.0):
    out = run([LMKIT, "simulate", "--layers", str(m["layers"]), "--hidden", str(m["hidden"]),
               "--heads", str(m["heads"]), "--ffn", str(m["ffn"] * 3 // 2), "--vocab", str(VOCAB),
               "--seq", str(m["seq"]), "--pp", str(pp), "--micro-batches", str(m["micro"]),
               "--schedule", sched, "--seq-chunks", str(k), "--seq-split", split,
               "--device-flops", repr(flops), "--link-bw", "10G", "--act-bytes", repr(act_bytes),
               "--value-bytes", "4", "--json"])
    return json.loads(out)


def pipeline_run(m, ranks, pp, sched, k, split, data, tmp, name):
    out = os.path.join(tmp, name)
    run(MPIRUN + ["-np", str(ranks), LMKIT] + train_args(m, data, out) +
        ["--pp", str(pp), "--pp-schedule", sched, "--seq-chunks", str(k), "--seq-split", split])
    with open(os.path.join(out, "pipeline.json")) as f:
        return json.load(f)


def step_time(p):
    """The pipeline's wall time per step after the first: the slowest stage."""
    return max((s["wall_s"] - s["first_step_wall_s"]) / (s["steps"] - 1) for s in p["stages"])


CASES = [("1f1b", 1, "even"), ("seq1f1b", 2, "even"), ("seq1f1b", 2, "compute"),
         ("seq1f1b", 4, "even"), ("seq1f1b", 4, "compute")]


def main():
    with tempfile.TemporaryDirectory(prefix="lmkit-pp-") as tmp:
        data = data_dir(tmp)
        # 1. Calibration: the whole model in one process with one thread, two such processes at
        # once (one per core), as the two stages will run: they share the memory system.
        outs = [os.path.join(tmp, f"one{i}") for i in range(2)]
        procs = [subprocess.Popen([LMKIT] + train_args(TIME, data, o), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for o in outs]
        for p in procs:
            if p.wait() != 0:
                sys.exit(f"calibration run failed: {p.stderr.read()}")
        tokens = TIME["micro"] * TIME["seq"]
        times = []
        for o in outs:
            with open(os.path.join(o, "metrics.jsonl")) as f:
                lines = [json.loads(line) for line in f if line.strip()]
            times += [tokens / line["tok_s"] for line in lines[1:]]
        one_step = statistics.median(times)
        work = simulate(TIME, 1, "1f1b", 1, "even")["step_time_s"]  # FLOPs at 1 FLOP/s
        flops = work / one_step
        print(f"calibration: 2 processes x 1 thread, {TIME['layers']} layers x d {TIME['hidden']},"
              f" {TIME['micro']} x {TIME['seq']} tokens per step: {one_step:.3f} s per step,"
              f" {flops / 1e9:.1f} GFLOP/s effective\n")

        # 2. Time: pp 2 on 2 ranks.
        print("| pp 2 schedule | chunks | measured s/step | simulated s/step | error | measured "
              "bubble | simulated bubble |")
        print("|---|---|---|---|---|---|---|")
        errors = []
        for sched, k, split in CASES:
            p = pipeline_run(TIME, 2, 2, sched, k, split, data, tmp, f"t-{sched}-{k}-{split}")
            sim = simulate(TIME, 2, sched, k, split, flops)
            meas = step_time(p)
            busy = sum((s["busy_s"]) for s in p["stages"])
            wall = sum(s["wall_s"] for s in p["stages"])
            err = sim["step_time_s"] / meas - 1
            errors.append(abs(err))
            label = sched if k == 1 else f"{sched} k={k} {split}"
            print(f"| {label} | {' '.join(map(str, p['chunk_lengths']))} | {meas:.3f} |"
                  f" {sim['step_time_s']:.3f} | {100 * err:+.1f}% | {100 * (1 - busy / wall):.1f}%"
                  f" | {100 * sim['bubble_fraction']:.1f}% |")
        print(f"\nlargest |error|: {100 * max(errors):.1f}% (target <= 15%)\n")

        # 3. Memory: pp 4 on 4 ranks.
        mem_cases = CASES + [("seq1f1b", 8, "even"), ("seq1f1b", 8, "compute")]
        runs = {}
        for sched, k, split in mem_cases:
            runs[(sched, k, split)] = pipeline_run(MEM, 4, 4, sched, k, split, data, tmp,
                                                   f"m-{sched}-{k}-{split}")
        # act-bytes from 1F1B's stage 0: its peak over (in-flight tokens x layers x hidden).
        base = runs[("1f1b", 1, "even")]["stages"][0]
        lps = MEM["layers"] // 4
        act_bytes = base["peak_activation_bytes"] / (
            base["peak_inflight_chunks"] * MEM["seq"] * lps * MEM["hidden"])
        print(f"memory: {MEM['layers']} layers x d {MEM['hidden']}, {MEM['seq']} tokens, "
              f"{MEM['micro']} micro-batches, pp 4; calibrated activation bytes per token, layer "
              f"and hidden unit: {act_bytes:.1f} (fp32)\n")
        print("| pp 4 schedule | chunks | peak activations per stage, MiB (measured) | "
              "simulated | stage 0 vs 1F1B | stage-0 error |")
        print("|---|---|---|---|---|---|")
        b0 = base["peak_activation_bytes"]
        for key in mem_cases:
            sched, k, split = key
            p = runs[key]
            sim = simulate(MEM, 4, sched, k, split, 1.0, act_bytes)
            meas = [s["peak_activation_bytes"] for s in p["stages"]]
            label = sched if k == 1 else f"{sched} k={k} {split}"
            mib = lambda v: " / ".join(f"{x / 2**20:.0f}" for x in v)
            print(f"| {label} | {' '.join(map(str, p['chunk_lengths']))} | {mib(meas)} |"
                  f" {mib(sim['peak_activation_bytes'])} | {meas[0] / b0:.2f}x |"
                  f" {100 * (sim['peak_activation_bytes'][0] / meas[0] - 1):+.1f}% |")

        # 4. Throughput at pp 4, simulated with the calibrated FLOP/s (4 ranks on 2 cores cannot
        # time it honestly).
        print(f"\npp 4 throughput, simulated at {flops / 1e9:.1f} GFLOP/s per stage (the memory "
              "model above):\n")
        print("| pp 4 schedule | bubble (closed form) | simulated bubble | simulated s/step | "
              "throughput vs 1F1B |")
        print("|---|---|---|---|---|")
        p, m = 4, MEM["micro"]
        t0 = None
        for sched, k, split in mem_cases:
            sim = simulate(MEM, p, sched, k, split, flops, act_bytes)
            t0 = t0 or sim["step_time_s"]
            label = sched if k == 1 else f"{sched} k={k} {split}"
            closed = (p - 1) / (m * k + p - 1)
            print(f"| {label} | {100 * closed:.1f}% | {100 * sim['bubble_fraction']:.1f}% |"
                  f" {sim['step_time_s']:.2f} | {t0 / sim['step_time_s']:.3f}x |")


if __name__ == "__main__":
    main()
