"""Benchmark: alignlab `prefs` (loss=dpo) against TRL's DPOTrainer on CPU, same work on both sides.

Same model folder, same preference pairs (the testbed's ranking export as conversational
prompt/chosen/rejected rows), same batch size, max length, number of optimiser steps, β,
learning rate and thread count; fp32; no gradient checkpointing; the reference model held in
memory on both sides (alignlab `reference: copy`, TRL `precompute_ref_log_probs=False` with an
explicit deep-copied `ref_model`). Each run is its own subprocess, A/B interleaved, repeated;
the median is reported. Throughput = pairs per second of the training loop (TRL: `train()`;
alignlab: `Trainer.fit`), after model loading and tokenization on both sides. Memory = peak RSS
of the process during training (sampled every 5 ms) and the rise over the RSS just before it.

    python benchmarks/bench_dpo_vs_trl.py                 # both models, writes benchmarks/RESULTS_dpo.md
    python benchmarks/bench_dpo_vs_trl.py --steps 10 --reps 1 --models tiny

TRL is an optional benchmark dependency (`pip install 'alignlab[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# --- memory sampling (inside a worker) --------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS:
    """Samples this process's RSS in a thread; `.peak` is the highest value seen."""

    def __init__(self, every: float = 0.005):
        self.every, self.peak, self._stop = every, _rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


# --- setup (driver) ----------------------------------------------------------------------------


def make_models(folder: Path, testbed_size: str) -> dict[str, Path]:
    """The testbed model and a random-weight ~10M-parameter Llama sharing the testbed tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from alignlab.testbed.build import ensure_testbed

    testbed = ensure_testbed(testbed_size)
    tok = AutoTokenizer.from_pretrained(testbed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=320, intermediate_size=864, num_hidden_layers=8,
                      num_attention_heads=5, num_key_value_heads=5, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    out = folder / "llama10m"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    summary = json.loads((testbed / "build_summary.json").read_text())
    return {testbed_size: (testbed, int(summary["params"])),
            "llama10m": (out, sum(p.numel() for p in model.parameters()))}


def make_data(folder: Path, n_trees: int) -> Path:
    """Conversational prompt/chosen/rejected rows from the testbed's ranked dialogue trees."""
    from alignlab.data.oasst import export_rm, read_trees
    from alignlab.data.preference import parse_row, to_pairs
    from alignlab.testbed.world import World

    trees_path = folder / "trees.jsonl"
    trees_path.write_text("".join(json.dumps(t) + "\n" for t in World().dialogue_trees(n=n_trees)))
    trees, _ = read_trees(trees_path)
    recs = [parse_row(r, f"export:{i}") for i, r in enumerate(export_rm(trees), 1)]
    rows = [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in to_pairs(recs)]
    out = folder / "pairs.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


# --- workers -----------------------------------------------------------------------------------


def worker_ours(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from alignlab.config import load_config
    from alignlab.recipes import prefs

    # time only the training loop, as for TRL: wrap Trainer.fit
    timing: dict[str, float] = {}
    orig_fit = prefs.Trainer.fit

    def timed_fit(self, *args, **kwargs):
        timing["rss_before"] = _rss_mb()
        with PeakRSS() as mem:
            t = time.perf_counter()
            out = orig_fit(self, *args, **kwargs)
            timing["seconds"] = time.perf_counter() - t
        timing["peak"] = mem.peak
        return out

    prefs.Trainer.fit = timed_fit
    cfg = load_config(prefs.PrefsConfig, None, [
        f"model.name_or_path={a.model}", f"data={a.data}", f"output_dir={a.out}", "preference.loss=dpo", f"preference.beta={a.beta}",
        "reference=copy", f"train.batch_size={a.batch}", f"train.max_steps={a.steps}", f"train.lr={a.lr}",
        "train.log_every=10", "train.save_every=0", "train.progress=false", "train.max_grad_norm=1.0",
        "eval_fraction=0", f"max_length={a.max_length}", f"max_prompt_length={a.max_length // 2}",
    ])
    res = prefs.run(cfg)
    return {"side": "alignlab", "seconds": timing["seconds"], "pairs": a.steps * a.batch,
            "peak_rss_mb": timing["peak"], "rss_before_mb": timing["rss_before"], "final_loss": res.metrics["loss"]}


def worker_trl(a: argparse.Namespace) -> dict:
    import copy

    import torch

    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows = [json.loads(line) for line in Path(a.data).read_text().splitlines()]
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(a.model)
    args = DPOConfig(output_dir=a.out, per_device_train_batch_size=a.batch, max_steps=a.steps, learning_rate=a.lr,
                     lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                     beta=a.beta, loss_type=["sigmoid"], max_length=a.max_length, precompute_ref_log_probs=False,
                     use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, logging_steps=10,
                     save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0,
                     disable_tqdm=True, adam_epsilon=1e-8)
    trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    before = _rss_mb()
    with PeakRSS() as mem:
        t = time.perf_counter()
        out = trainer.train()
        seconds = time.perf_counter() - t
    return {"side": "trl", "seconds": seconds, "pairs": a.steps * a.batch, "peak_rss_mb": mem.peak,
            "rss_before_mb": before, "final_loss": out.training_loss}


# --- driver ------------------------------------------------------------------------------------


def run_worker(side: str, model: Path, data: Path, a: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(model), "--data", str(data),
           "--out", str(out), "--steps", str(a.steps), "--batch", str(a.batch), "--max-length", str(a.max_length),
           "--threads", str(a.threads), "--lr", str(a.lr), "--beta", str(a.beta)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
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
    ap.add_argument("--models", nargs="+", default=["student", "llama10m"],
                    help="testbed size and/or llama10m (default: student llama10m)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS_dpo.md"))
    a = ap.parse_args()
    if a.worker:
        res = (worker_ours if a.worker == "ours" else worker_trl)(a)
        print("RESULT " + json.dumps(res), flush=True)
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    testbed_sizes = [m for m in a.models if m != "llama10m"]
    made = make_models(tmp, testbed_sizes[0] if testbed_sizes else "tiny")
    models = {m: made[m][0] for m in a.models}
    data = make_data(tmp, a.trees)
    n_pairs = sum(1 for _ in data.open())
    table = []
    for name, folder in models.items():
        runs: dict[str, list[dict]] = {"alignlab": [], "trl": []}
        for rep in range(a.reps):
            for side in ("ours", "trl") if rep % 2 == 0 else ("trl", "ours"):
                r = run_worker(side, folder, data, a, tmp / f"{name}-{side}-{rep}")
                runs[r["side"]].append(r)
                print(f"{name} rep {rep} {r['side']}: {r['pairs'] / r['seconds']:.1f} pairs/s, "
                      f"peak {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_mb'] - r['rss_before_mb']:.0f})", flush=True)
        med = {s: {k: statistics.median(x[k] for x in v) for k in ("seconds", "peak_rss_mb", "rss_before_mb")}
               for s, v in runs.items()}
        ours, trl = med["alignlab"], med["trl"]
        # runs of one repetition are adjacent in time (similar machine load): their ratio is the fairest
        paired = statistics.median(t["seconds"] / o["seconds"] for o, t in zip(runs["alignlab"], runs["trl"]))
        params = made[name][1]
        table.append({
            "model": name, "params": params, "ours_pairs_s": a.steps * a.batch / ours["seconds"],
            "trl_pairs_s": a.steps * a.batch / trl["seconds"], "speedup": paired,
            "ours_peak_mb": ours["peak_rss_mb"], "trl_peak_mb": trl["peak_rss_mb"],
            "ours_rise_mb": ours["peak_rss_mb"] - ours["rss_before_mb"],
            "trl_rise_mb": trl["peak_rss_mb"] - trl["rss_before_mb"],
            "ours_runs": [round(a.steps * a.batch / r["seconds"], 2) for r in runs["alignlab"]],
            "trl_runs": [round(a.steps * a.batch / r["seconds"], 2) for r in runs["trl"]],
        })
    write_results(Path(a.results), table, a, n_pairs)
    print(Path(a.results).read_text())


def write_results(path: Path, table: list[dict], a: argparse.Namespace, n_pairs: int) -> None:
    import platform

    import torch
    import transformers
    import trl

    lines = [
        "# DPO: alignlab vs TRL DPOTrainer (CPU)", "",
        f"Command: `python benchmarks/bench_dpo_vs_trl.py --models {' '.join(a.models)} --steps {a.steps} "
        f"--batch {a.batch} --max-length {a.max_length} --threads {a.threads} --reps {a.reps}`", "",
        f"Setup: {a.steps} optimiser steps × {a.batch} pairs, max_length {a.max_length}, fp32, {a.threads} thread(s) "
        f"per process, β={a.beta}, lr={a.lr}, reference model held in memory on both sides, no gradient "
        f"checkpointing; data: {n_pairs} pairs from the testbed ranking export. torch {torch.__version__}, "
        f"transformers {transformers.__version__}, TRL {trl.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs. Median of {a.reps} interleaved runs per side.", "",
        "Speed-up = median over repetitions of (TRL time / alignlab time) of the two adjacent runs. "
        "Peak RSS = whole process (model, reference copy, libraries); rise = peak during training minus RSS "
        "just before it.", "",
        "| model (params) | alignlab pairs/s | TRL pairs/s | speed-up | alignlab peak RSS MB (rise) | TRL peak RSS MB (rise) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(f"| {r['model']} ({r['params'] / 1e6:.2f}M) | {r['ours_pairs_s']:.1f} | {r['trl_pairs_s']:.1f} | {r['speedup']:.2f}× | "
                     f"{r['ours_peak_mb']:.0f} (+{r['ours_rise_mb']:.0f}) | {r['trl_peak_mb']:.0f} (+{r['trl_rise_mb']:.0f}) |")
    lines += ["", "Per-run pairs/s: " + "; ".join(f"{r['model']}: alignlab {r['ours_runs']}, TRL {r['trl_runs']}"
                                                for r in table), ""]
    marker = "<!-- measurements below are kept when the benchmark is rerun -->"
    kept = path.read_text().split(marker, 1)[1] if path.exists() and marker in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "\n" + marker + kept)


if __name__ == "__main__":
    main()
