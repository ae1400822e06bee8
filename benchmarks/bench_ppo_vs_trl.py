"""alignlab PPO vs TRL's online RL trainer (RLOO; TRL 1.16 has no PPO) on the same model,
prompts, generation length and batch: wall seconds per rollout+update step, where the time
goes, achieved GFLOP/s against a GEMM peak measured in the same run, and peak memory.

    python benchmarks/bench_ppo_vs_trl.py                       # student + llama10m, 3 repeats
    python benchmarks/bench_ppo_vs_trl.py --models student --repeats 1 --steps 4

Models: a testbed size (`student`, `tiny`) and/or `llama10m`, a random-weight ~10M Llama on the
testbed tokenizer (built by `bench_dpo_vs_trl.make_models`). Each side runs in its own
subprocess (so peak memory is its own), the two alternating in ABBA order `--repeats` times.

Step time (same definition on both sides): the wall time between the ends of consecutive
optimiser steps (alignlab: the per-iteration record being logged; TRL: `on_step_end`), so it
holds everything a step does (sampling, scoring, reward, update, bookkeeping). The first
`--warmup` steps are dropped; a repeat's figure is the median of its steps; a side's figure is
the median over repeats, and the ratio is the median over repeats of TRL / alignlab of the two
adjacent runs.

Matched settings: 64 completions per step (alignlab: 64 prompts; RLOO: 16 prompts × 4
generations), ≤ 24 new tokens, temperature 1, one optimiser step over the whole batch per
rollout (alignlab ppo.epochs=1, minibatch 64; RLOO num_iterations=1), β_KL = 0.05 against a
frozen reference, lr 1e-5, fp32, CPU, no gradient checkpointing, the testbed gold sentiment
reward, the same torch thread count (`--threads`, default 1). alignlab also trains a value
head and computes GAE; RLOO has no critic.

Shares: generation, scoring (no-grad forwards: alignlab's reference pass; TRL's reference and
old-policy passes), update (alignlab: forward + backward + optimiser + GAE; TRL: the rest of
the step), other (alignlab: what lies outside those timers).

Efficiency: the work a step must do, counted the same for both sides from their own lengths
(benchmarks/flops.py; mean prompt and response length of the step): sampling (one forward per
token), one reference forward and one trained forward+backward over prompt+response, LM head at
response positions, causal attention. GFLOP/s = that / step time; % = of the fp32 GEMM peak
measured in this run at the model's widths on the same thread count.
Peak memory is the process's peak RSS (VmHWM) during training. The process CPU time per step is
printed too (one thread: close to what the step would take on an idle core; a check when the
machine is shared), but the reported figures are wall times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPLETIONS, N_GEN, MAX_NEW, BETA, LR = 64, 4, 24, 0.05, 1e-5


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _prompts(n: int) -> list[str]:
    from alignlab.testbed.world import World

    return World().review_prompts(n, seed=0)


def _intervals(ends: list[float], warmup: int) -> list[float]:
    """Step times from step-end timestamps: end[i] − end[i−1] for the steps after the warm-up ones."""
    return [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])] if warmup >= 1 else \
        [b - a for a, b in zip(ends, ends[1:])]


# --- workers -----------------------------------------------------------------------------------


def run_alignlab(model: str, steps: int, warmup: int, out: str) -> dict:
    import shutil

    import torch

    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.recipes import ppo
    from alignlab.runs import RunDir

    torch.manual_seed(0)
    shutil.rmtree(out, ignore_errors=True)
    ends: list[float] = []
    cpu_ends: list[float] = []
    real_log = RunDir.log

    def timed_log(self, rec, *a, **k):
        if rec.get("iteration", 0) > 0 and "time_update" in rec:
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())
        return real_log(self, rec, *a, **k)

    RunDir.log = timed_log
    cfg = ppo.PPOConfig(
        model=ModelSettings(name_or_path=model),
        train=TrainSettings(lr=LR, batch_size=COMPLETIONS, grad_accum=1, log_every=1, save_every=0, progress=False),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=COMPLETIONS * (steps + warmup),
        generation=ppo.SamplingSettings(max_new_tokens=MAX_NEW, batch_size=COMPLETIONS),
        ppo=ppo.PPOSettings(iterations=steps + warmup, rollout_batch=COMPLETIONS, epochs=1, kl_coef=BETA),
        eval=ppo.DriftEvalSettings(every=0),
        output_dir=out,
    )
    base_rss = _rss_kb("VmRSS")
    _reset_peak()
    ppo.run(cfg)
    times = _intervals(ends, warmup)
    recs = [r for r in map(json.loads, Path(out, "metrics.jsonl").read_text().splitlines()) if "time_update" in r]
    recs = recs[warmup:]
    total = sum(times)
    shares = {k: sum(r[f"time_{key}"] for r in recs) / total
              for k, key in (("generation", "generate"), ("scoring", "score"), ("reward", "reward"),
                             ("update", "update"))}
    shares["other"] = 1 - sum(shares.values())
    return {"side": "alignlab PPO", "step_times": times, "cpu_times": _intervals(cpu_ends, warmup), "shares": shares,
            "response_lens": [r["response_len"] for r in recs],
            "peak_rss_mb": _rss_kb("VmHWM") / 1024, "train_delta_mb": (_rss_kb("VmHWM") - base_rss) / 1024}


def run_trl(model: str, steps: int, warmup: int, out: str) -> dict:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from alignlab.testbed.lexicon import sentiment_reward

    torch.manual_seed(0)
    clock = {"generation": 0.0, "scoring": 0.0}
    real_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *a, **k):
        t = time.perf_counter()
        try:
            return real_generate(self, *a, **k)
        finally:
            clock["generation"] += time.perf_counter() - t

    transformers.GenerationMixin.generate = timed_generate
    real_logps = RLOOTrainer._get_per_token_logps_and_entropies

    def timed_logps(self, *a, **k):
        if torch.is_grad_enabled():  # the training forward: part of the update
            return real_logps(self, *a, **k)
        t = time.perf_counter()
        try:
            return real_logps(self, *a, **k)
        finally:
            clock["scoring"] += time.perf_counter() - t

    RLOOTrainer._get_per_token_logps_and_entropies = timed_logps
    lengths: list[float] = []

    def reward(prompts, completions, completion_ids=None, **kw):
        if completion_ids is not None:
            lengths.append(sum(len(c) for c in completion_ids) / len(completion_ids))
        return [sentiment_reward(c) for c in completions]

    n_prompts = COMPLETIONS // N_GEN
    ds = Dataset.from_dict({"prompt": _prompts(n_prompts * (steps + warmup))})
    args = RLOOConfig(
        output_dir=out, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        per_device_train_batch_size=COMPLETIONS, gradient_accumulation_steps=1, num_generations=N_GEN,
        max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, beta=BETA, num_iterations=1,
        learning_rate=LR, max_steps=steps + warmup, logging_steps=10_000, save_strategy="no",
        report_to="none", seed=0, disable_tqdm=True, shuffle_dataset=False,
    )

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.cpu_ends: list[float] = []
            self.clocks: list[dict[str, float]] = []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())
            self.clocks.append(dict(clock))

    timer = Timer()
    trainer = RLOOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, callbacks=[timer])
    base_rss = _rss_kb("VmRSS")
    _reset_peak()
    trainer.train()
    times = _intervals(timer.ends, warmup)
    first, last = timer.clocks[max(0, warmup - 1)], timer.clocks[-1]
    shares = {k: (last[k] - first[k]) / sum(times) for k in ("generation", "scoring")}
    shares["update"] = 1 - sum(shares.values())
    return {"side": "TRL RLOO", "step_times": times, "cpu_times": _intervals(timer.cpu_ends, warmup), "shares": shares, "response_lens": lengths[warmup:],
            "peak_rss_mb": _rss_kb("VmHWM") / 1024, "train_delta_mb": (_rss_kb("VmHWM") - base_rss) / 1024,
            "trl_version": __import__("trl").__version__}


# --- driver ------------------------------------------------------------------------------------


def step_flops(folder: Path, prompt_len: float, response_len: float) -> float:
    """FLOPs one step must do (benchmarks/flops.py) for 64 sequences of the given mean lengths:
    sampling + reference forward (2 forwards) and one trained pass, head at response positions."""
    import flops
    import torch
    from transformers import AutoModelForCausalLM

    shape = flops.model_shape(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))
    n = prompt_len + response_len
    tokens, head = COMPLETIONS * n, COMPLETIONS * response_len
    attended = COMPLETIONS * n * (n + 1) / 2
    return 2 * shape.forward_flops(tokens, head, attended) + shape.train_flops(tokens, head, attended)


def mean_prompt_len(folder: Path) -> float:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    texts = _prompts(256)
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)


def run_side(side: str, folder: Path, a: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--model", str(folder), "--steps", str(a.steps),
           "--warmup", str(a.warmup), "--out", str(out), "--threads", str(a.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(a.threads), "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        sys.exit(f"{side} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(line[-1][7:])


def summarise(name: str, folder: Path, params: int, runs: dict[str, list[dict]], peak: dict) -> dict:
    """Per side: median step over repeats, shares, memory, efficiency; the paired ratio."""
    p_len = mean_prompt_len(folder)
    row: dict = {"model": name, "params": params, "peak_gflops": peak["gflops"], "peak_size": peak["size"],
                 "prompt_len": p_len}
    for side, rs in runs.items():
        meds = [statistics.median(r["step_times"]) for r in rs]
        r_len = statistics.mean(x for r in rs for x in r["response_lens"])
        step = statistics.median(meds)
        gflops = step_flops(folder, p_len, r_len) / step / 1e9
        shares = {k: statistics.mean(r["shares"].get(k, 0.0) for r in rs) for k in rs[0]["shares"]}
        row[side] = {"step_s": step, "repeats": [round(m, 3) for m in meds], "shares": shares,
                     "cpu_s": statistics.median(statistics.median(r["cpu_times"]) for r in rs),
                     "response_len": r_len, "gflops": gflops, "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                     "train_delta_mb": max(r["train_delta_mb"] for r in rs)}
    row["ratio"] = statistics.median(statistics.median(t["step_times"]) / statistics.median(o["step_times"])
                                     for o, t in zip(runs["alignlab"], runs["trl"]))
    return row


def write_results(path: Path, table: list[dict], a: argparse.Namespace, load: tuple[float, float]) -> str:
    """Append this run's table to RESULTS_ppo.md (date, command, load average); returns the text."""
    cmd = (f"python benchmarks/bench_ppo_vs_trl.py --models {' '.join(a.models)} --steps {a.steps} "
           f"--warmup {a.warmup} --repeats {a.repeats} --threads {a.threads}")
    lines = [
        "", f"## Run of {datetime.datetime.now():%Y-%m-%d %H:%M} (load average {load[0]:.1f} at start, "
        f"{load[1]:.1f} at end)", "", f"    {cmd}", "",
        "| model (params) | alignlab s/step | TRL RLOO s/step | throughput ratio | alignlab GFLOP/s (% of peak) | "
        "TRL GFLOP/s (% of peak) | GEMM peak | peak RSS alignlab / TRL (training rise) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        o, t, pk = r["alignlab"], r["trl"], r["peak_gflops"]
        lines.append(
            f"| {r['model']} ({r['params'] / 1e6:.2f}M) | {o['step_s']:.3f} {o['repeats']} | "
            f"{t['step_s']:.3f} {t['repeats']} | **{r['ratio']:.2f}×** | {o['gflops']:.1f} ({100 * o['gflops'] / pk:.0f} %) | "
            f"{t['gflops']:.1f} ({100 * t['gflops'] / pk:.0f} %) | {pk:.0f} GFLOP/s (n={r['peak_size']}) | "
            f"{o['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} MB (+{o['train_delta_mb']:.0f} / +{t['train_delta_mb']:.0f}) |")
    lines.append("")
    for r in table:
        for side in ("alignlab", "trl"):
            s = r[side]
            lines.append(f"- {r['model']} {side}: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in s["shares"].items())
                         + f"; mean response {s['response_len']:.1f} tokens (prompt {r['prompt_len']:.1f}); "
                         f"process CPU {s['cpu_s']:.3f} s/step")
    text = "\n".join(lines) + "\n"
    with path.open("a") as f:
        f.write(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["student", "llama10m"],
                    help="testbed size and/or llama10m (default: student llama10m)")
    ap.add_argument("--steps", type=int, default=8, help="measured steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each run (≥ 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both sides (default 1)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS_ppo.md"))
    ap.add_argument("--side", choices=["alignlab", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.warmup = max(1, a.warmup)
    if a.side:
        import torch

        torch.set_num_threads(a.threads)
        fn = run_alignlab if a.side == "alignlab" else run_trl
        print("RESULT " + json.dumps(fn(a.model, a.steps, a.warmup, a.out)))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_dpo_vs_trl import alternating, make_models, measure_peak, model_widths

    tmp = Path(tempfile.mkdtemp(prefix="bench_ppo_"))
    made = make_models(tmp, a.models)
    load_start = os.getloadavg()[0]
    table = []
    for name in a.models:
        folder, params = made[name]
        peak = measure_peak(model_widths(folder), a.threads)
        runs: dict[str, list[dict]] = {"alignlab": [], "trl": []}
        for rep, side in alternating(a.repeats, "alignlab", "trl"):
            res = run_side(side, folder, a, tmp / f"{name}-{side}-{rep}")
            runs[side].append(res)
            print(f"{name} [{rep + 1}/{a.repeats}] {side}: median step {statistics.median(res['step_times']):.3f} s "
                  f"(CPU {statistics.median(res['cpu_times']):.3f} s), "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB, load {os.getloadavg()[0]:.1f}", flush=True)
        peak = max(peak, measure_peak(model_widths(folder), a.threads), key=lambda p: p["gflops"])
        row = summarise(name, folder, params, runs, peak)
        table.append(row)
        print(f"{name}: alignlab PPO {row['alignlab']['step_s']:.3f} s/step vs TRL RLOO {row['trl']['step_s']:.3f} "
              f"s/step -> {row['ratio']:.2f}x (process CPU s/step {row['alignlab']['cpu_s']:.3f} vs "
              f"{row['trl']['cpu_s']:.3f})", flush=True)
    Path(tmp, "summary.json").write_text(json.dumps(table, indent=2))
    print(write_results(Path(a.results), table, a, (load_start, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
