"""Benchmark: alignlab `sft` against TRL's SFTTrainer on CPU, same work on both sides.

Same model folder (the ~10M random-weight Llama of bench_dpo_vs_trl, or a testbed size), same
rows (the testbed ranking export's prompt + preferred reply: alignlab `{"prompt", "response"}`,
TRL the prompt-completion form, so both train on the reply tokens only), the first
steps × batch of them (one epoch), same batch size, max length, optimiser steps, learning rate,
clipping and thread count; fp32, no gradient checkpointing, TRL `packing=False` (its default).
Each run is its own subprocess, A/B interleaved, repeated; medians reported, the speed-up is the
median of per-repetition ratios. Throughput = sequences per second of the training loop
(alignlab `Trainer.fit`, TRL `train()`), after loading and tokenization. Memory = peak RSS of
the whole process over the run. Efficiency = counted FLOPs (benchmarks/flops.py: 6·N_body per
token, 6·N_head per reply token, attention over the causal triangle) / time, as GFLOP/s and as a
fraction of the fp32 GEMM peak measured in the same run at the model's widths, same threads; the
same count for both sides (TRL's column is task work per second).

    python benchmarks/bench_sft_vs_trl.py                 # llama10m; writes benchmarks/RESULTS_sft.md
    python benchmarks/bench_sft_vs_trl.py --models student --steps 10 --reps 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dpo_vs_trl import (  # noqa: E402
    PeakRSS,
    _rss_mb,
    alternating,
    last_logged_loss,
    make_models,
    measure_peak,
    model_widths,
)


def make_rows(folder: Path, n_trees: int, n: int) -> Path:
    """`n` rows {prompt: messages, response: text}: the testbed ranking export's prompt and preferred reply."""
    from alignlab.data.oasst import export_rm, read_trees
    from alignlab.data.preference import parse_row, to_pairs
    from alignlab.testbed.world import World

    trees_path = folder / "trees.jsonl"
    trees_path.write_text("".join(json.dumps(t) + "\n" for t in World().dialogue_trees(n=n_trees)))
    trees, _ = read_trees(trees_path)
    recs = [parse_row(r, f"export:{i}") for i, r in enumerate(export_rm(trees), 1)]
    rows = [{"prompt": p.prompt, "response": p.chosen} for p in to_pairs(recs)]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} rows from {n_trees} trees; need {n} (raise --trees)")
    out = folder / f"sft{n}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
    return out


def counted_flops(model: Any, examples: list) -> float:
    """Forward+backward of every sequence: body at every token, LM head at the reply tokens."""
    import flops

    shape = flops.model_shape(model)
    lengths = [len(e.input_ids) for e in examples]
    head = sum(sum(e.loss_mask[1:]) for e in examples)  # positions predicting a reply token
    return shape.train_flops(sum(lengths), head, flops.causal_attended(lengths))


def worker_ours(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from alignlab.config import load_config
    from alignlab.recipes import sft
    from alignlab.train.loop import Trainer

    timing: dict[str, float] = {}
    orig_fit = Trainer.fit

    def timed_fit(self, items, *args, **kwargs):
        timing["flops"] = counted_flops(self.unwrapped, list(items))
        t, c = time.perf_counter(), time.process_time()
        out = orig_fit(self, items, *args, **kwargs)
        timing["seconds"] = time.perf_counter() - t
        timing["cpu_seconds"] = time.process_time() - c
        return out

    Trainer.fit = timed_fit
    cfg = load_config(sft.SFTConfig, None, [
        f"model.name_or_path={a.model}", f"data={a.data}", f"output_dir={a.out}", f"train.batch_size={a.batch}",
        f"train.max_steps={a.steps}", f"train.lr={a.lr}", "train.log_every=10", "train.save_every=0",
        "train.progress=false", "train.max_grad_norm=1.0", f"max_length={a.max_length}",
    ])
    with PeakRSS() as mem:
        before = _rss_mb()
        res = sft.run(cfg)
    return {"side": "alignlab", "seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"],
            "flops": timing["flops"], "peak_rss_mb": mem.peak,
            "rss_before_mb": before, "final_loss": res.metrics["loss"]}


def worker_trl(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in Path(a.data).read_text().splitlines()]
    rows = [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows]
    with PeakRSS() as mem:
        before = _rss_mb()
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(a.model)
        args = SFTConfig(output_dir=a.out, per_device_train_batch_size=a.batch, max_steps=a.steps,
                         learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         max_grad_norm=1.0, max_length=a.max_length, packing=False, completion_only_loss=True,
                         use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, logging_steps=10,
                         save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0, disable_tqdm=True,
                         adam_epsilon=1e-8)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        t, c = time.perf_counter(), time.process_time()
        out = trainer.train()
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    return {"side": "trl", "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": mem.peak, "rss_before_mb": before,
            "final_loss": last_logged_loss(trainer, out.training_loss)}


def run_worker(side: str, model: Path, data: Path, a: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(model), "--data", str(data),
           "--out", str(out), "--steps", str(a.steps), "--batch", str(a.batch), "--max-length", str(a.max_length),
           "--threads", str(a.threads), "--lr", str(a.lr)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{side} worker failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["ours", "trl"])
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--models", nargs="+", default=["llama10m"], help="llama10m and/or a testbed size")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS_sft.md"))
    a = ap.parse_args()
    if a.worker:
        res = (worker_ours if a.worker == "ours" else worker_trl)(a)
        print("RESULT " + json.dumps(res), flush=True)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    made = make_models(tmp, a.models)
    data = make_rows(tmp, a.trees, a.steps * a.batch)
    load_start = os.getloadavg()[0]
    table = []
    for name in a.models:
        folder, params = made[name]
        peak = measure_peak(model_widths(folder), a.threads)
        runs: dict[str, list[dict]] = {"alignlab": [], "trl": []}
        for rep, side in alternating(a.reps, "ours", "trl"):
            r = run_worker(side, folder, data, a, tmp / f"{name}-{side}-{rep}")
            runs[r["side"]].append(r)
            print(f"{name} rep {rep} {r['side']}: {a.steps * a.batch / r['seconds']:.1f} seq/s, "
                  f"{r['cpu_seconds']:.1f} CPU s, "
                  f"peak {r['peak_rss_mb']:.0f} MB, loss {r['final_loss']:.3f}, load {os.getloadavg()[0]:.1f}",
                  flush=True)
        peak = max(peak, measure_peak(model_widths(folder), a.threads), key=lambda p: p["gflops"])
        n = a.steps * a.batch
        med = {s: {k: statistics.median(x[k] for x in v) for k in ("seconds", "peak_rss_mb")} for s, v in runs.items()}
        work = runs["alignlab"][0]["flops"]
        table.append({
            "model": name, "params": params, "ours_seq_s": n / med["alignlab"]["seconds"],
            "trl_seq_s": n / med["trl"]["seconds"],
            "speedup": statistics.median(t["seconds"] / o["seconds"] for o, t in zip(runs["alignlab"], runs["trl"])),
            "speedup_cpu": statistics.median(t["cpu_seconds"] / o["cpu_seconds"]
                                             for o, t in zip(runs["alignlab"], runs["trl"])),
            "ours_gflops": work / med["alignlab"]["seconds"] / 1e9, "trl_gflops": work / med["trl"]["seconds"] / 1e9,
            "peak": peak, "ours_mb": med["alignlab"]["peak_rss_mb"], "trl_mb": med["trl"]["peak_rss_mb"],
            "ours_runs": [round(n / r["seconds"], 2) for r in runs["alignlab"]],
            "trl_runs": [round(n / r["seconds"], 2) for r in runs["trl"]],
            "ours_cpu": [round(r["cpu_seconds"], 1) for r in runs["alignlab"]],
            "trl_cpu": [round(r["cpu_seconds"], 1) for r in runs["trl"]],
        })
    write_results(Path(a.results), table, a, load_start, os.getloadavg()[0])
    print(Path(a.results).read_text())


def write_results(path: Path, table: list[dict], a: argparse.Namespace, load_start: float, load_end: float) -> None:
    """Rewrite the head of RESULTS_sft.md (kept notes below the marker stay)."""
    import datetime
    import platform

    import torch
    import transformers
    import trl

    lines = [
        "# SFT: alignlab vs TRL SFTTrainer (CPU)", "",
        f"Command: `python benchmarks/bench_sft_vs_trl.py --models {' '.join(a.models)} --steps {a.steps} "
        f"--batch {a.batch} --max-length {a.max_length} --threads {a.threads} --reps {a.reps}`", "",
        f"Run {datetime.date.today().isoformat()}, load average {load_start:.1f} at start, {load_end:.1f} at end. "
        f"Setup: one epoch of {a.steps} steps × {a.batch} sequences (prompt + preferred reply of the testbed ranking "
        f"export, loss on reply tokens), max_length {a.max_length}, fp32, {a.threads} thread(s) per process, "
        f"lr={a.lr}, clip 1.0, no gradient checkpointing, TRL packing=False. torch {torch.__version__}, "
        f"transformers {transformers.__version__}, TRL {trl.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs. Median of {a.reps} interleaved runs per side.", "",
        "Speed-up = median of per-repetition (TRL time / alignlab time), in wall time and in process CPU time "
        "(less sensitive to other jobs on a shared machine). GFLOP/s = counted FLOPs (benchmarks/flops.py; "
        "same count for both sides) / training-loop time; % = of the fp32 GEMM peak measured in this run.", "",
        "| model (params) | alignlab seq/s | TRL seq/s | speed-up (wall) | speed-up (CPU) | alignlab GFLOP/s (% peak) "
        "| TRL GFLOP/s (% peak) | GEMM peak GFLOP/s | alignlab peak RSS MB | TRL peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        pk = r["peak"]["gflops"]
        lines.append(f"| {r['model']} ({r['params'] / 1e6:.1f}M) | {r['ours_seq_s']:.1f} | {r['trl_seq_s']:.1f} | "
                     f"{r['speedup']:.2f}× | {r['speedup_cpu']:.2f}× | {r['ours_gflops']:.1f} ({100 * r['ours_gflops'] / pk:.0f} %) | "
                     f"{r['trl_gflops']:.1f} ({100 * r['trl_gflops'] / pk:.0f} %) | {pk:.0f} (n={r['peak']['size']}) | "
                     f"{r['ours_mb']:.0f} | {r['trl_mb']:.0f} |")
    lines += ["", "Per-run seq/s: " + "; ".join(f"{r['model']}: alignlab {r['ours_runs']}, TRL {r['trl_runs']}"
                                              for r in table),
              "", "Per-run CPU seconds: " + "; ".join(f"{r['model']}: alignlab {r['ours_cpu']}, TRL {r['trl_cpu']}"
                                                    for r in table), ""]
    marker = "<!-- measurements below are kept when the benchmark is rerun -->"
    kept = path.read_text().split(marker, 1)[1] if path.exists() and marker in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "\n" + marker + kept)


if __name__ == "__main__":
    main()
