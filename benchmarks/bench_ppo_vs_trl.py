"""alignlab PPO vs TRL's online RL trainer (RLOO; TRL 1.16 has no PPO) on the same model,
prompts, generation length and batch: seconds per rollout+update step and peak memory.

    .venv/bin/python benchmarks/bench_ppo_vs_trl.py [--model testbed:student] [--steps 8]

Each side runs in its own subprocess (so peak memory is its own), alternating `--repeats`
times; the reported time is the median step time over all measured steps (the first
`--warmup` steps of each run are dropped). Matched settings: 64 completions per step
(alignlab: 64 prompts; RLOO: 16 prompts x 4 generations), max 24 new tokens, temperature 1,
one optimiser step over the whole batch per rollout (alignlab ppo.epochs=1, minibatch 64;
RLOO num_iterations=1), KL coefficient 0.05 against a frozen reference, fp32, CPU,
gradient checkpointing off on both sides, the testbed gold sentiment reward, the same
number of torch threads (`--threads`, default 1: on a busy 2-core machine two spinning
OpenMP threads slow small matmuls 5-40x and make timings meaningless).
Peak memory is the process's peak RSS (VmHWM) during the measured steps; `train delta`
is that peak minus the RSS just before training started (model + optimiser + activations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def run_alignlab(model: str, steps: int, warmup: int, out: str) -> dict:
    import shutil

    import torch

    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.recipes import ppo
    from alignlab.resolve import model_path as resolve_model_path

    torch.manual_seed(0)
    shutil.rmtree(out, ignore_errors=True)
    cfg = ppo.PPOConfig(
        model=ModelSettings(name_or_path=resolve_model_path(model)),
        train=TrainSettings(lr=LR, batch_size=COMPLETIONS, grad_accum=1, log_every=1, save_every=0, progress=False),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=COMPLETIONS * (steps + warmup),
        generation=ppo.SamplingSettings(max_new_tokens=MAX_NEW, batch_size=COMPLETIONS),
        ppo=ppo.PPOSettings(iterations=steps + warmup, rollout_batch=COMPLETIONS, epochs=1, kl_coef=BETA),
        eval=ppo.DriftEvalSettings(every=0),
        output_dir=out,
    )
    base_rss = _rss_kb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    ppo.run(cfg)
    total = time.perf_counter() - t0
    recs = [r for r in map(json.loads, Path(out, "metrics.jsonl").read_text().splitlines()) if "time_update" in r]
    recs = recs[warmup:]
    step_times = [r["time_generate"] + r["time_score"] + r["time_reward"] + r["time_update"] for r in recs]
    gen = sum(r["time_generate"] for r in recs) / sum(step_times)
    score = sum(r["time_score"] for r in recs) / sum(step_times)
    return {"side": "alignlab PPO", "step_times": step_times, "generation_share": gen, "scoring_share": score,
            "update_share": 1 - gen - score, "peak_rss_mb": _rss_kb("VmHWM") / 1024,
            "train_delta_mb": (_rss_kb("VmHWM") - base_rss) / 1024, "total_s": total,
            "mean_response_len": sum(r["response_len"] for r in recs) / len(recs)}


def run_trl(model: str, steps: int, warmup: int, out: str) -> dict:
    import torch
    import transformers
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from alignlab.resolve import model_path as resolve_model_path
    from alignlab.testbed.lexicon import sentiment_reward

    torch.manual_seed(0)
    path = resolve_model_path(model)
    gen_time = {"s": 0.0}
    real_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *a, **k):
        t = time.perf_counter()
        try:
            return real_generate(self, *a, **k)
        finally:
            gen_time["s"] += time.perf_counter() - t

    transformers.GenerationMixin.generate = timed_generate
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
            self.times, self.gen, self._t, self._g = [], [], 0.0, 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t, self._g = time.perf_counter(), gen_time["s"]

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)
            self.gen.append(gen_time["s"] - self._g)

    timer = Timer()
    trainer = RLOOTrainer(model=path, reward_funcs=reward, args=args, train_dataset=ds, callbacks=[timer])
    base_rss = _rss_kb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    times, gens = timer.times[warmup:], timer.gen[warmup:]
    return {"side": "TRL RLOO", "step_times": times, "generation_share": sum(gens) / sum(times),
            "update_share": 1 - sum(gens) / sum(times), "peak_rss_mb": _rss_kb("VmHWM") / 1024,
            "train_delta_mb": (_rss_kb("VmHWM") - base_rss) / 1024, "total_s": total,
            "mean_response_len": sum(lengths[warmup:]) / max(1, len(lengths[warmup:])),
            "trl_version": __import__("trl").__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="testbed:student")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_ppo_vs_trl")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both sides (default 1)")
    ap.add_argument("--side", choices=["alignlab", "trl"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        import torch

        torch.set_num_threads(a.threads)
        fn = run_alignlab if a.side == "alignlab" else run_trl
        print("RESULT " + json.dumps(fn(a.model, a.steps, a.warmup, str(Path(a.out) / a.side))))
        return
    results: dict[str, list[dict]] = {"alignlab": [], "trl": []}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for rep in range(a.repeats):
        for side in ("alignlab", "trl"):
            cmd = [sys.executable, __file__, "--side", side, "--model", a.model, "--steps", str(a.steps),
                   "--warmup", str(a.warmup), "--out", a.out, "--threads", str(a.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                sys.exit(f"{side} run failed:\n{proc.stderr[-4000:]}")
            res = json.loads(line[0][7:])
            results[side].append(res)
            print(f"[{rep + 1}/{a.repeats}] {side}: median step {statistics.median(res['step_times']):.3f} s, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    summary = {}
    for side, runs in results.items():
        times = [t for r in runs for t in r["step_times"]]
        summary[side] = {
            "median_step_s": statistics.median(times),
            "generation_share": statistics.mean(r["generation_share"] for r in runs),
            "update_share": statistics.mean(r["update_share"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "train_delta_mb": max(r["train_delta_mb"] for r in runs),
            "mean_response_len": statistics.mean(r["mean_response_len"] for r in runs),
        }
        if side == "alignlab":
            summary[side]["scoring_share"] = statistics.mean(r["scoring_share"] for r in runs)
    ratio = summary["trl"]["median_step_s"] / summary["alignlab"]["median_step_s"]
    print(json.dumps(summary, indent=2))
    print(f"model {a.model}, {a.threads} thread(s): alignlab PPO {summary['alignlab']['median_step_s']:.3f} s/step vs "
          f"TRL RLOO {summary['trl']['median_step_s']:.3f} s/step -> throughput ratio {ratio:.2f}x; "
          f"peak RSS {summary['alignlab']['peak_rss_mb']:.0f} vs {summary['trl']['peak_rss_mb']:.0f} MB")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.out, "summary.json").write_text(json.dumps({"model": a.model, "threads": a.threads, "ratio": ratio,
                                                       **summary}, indent=2))


if __name__ == "__main__":
    main()
