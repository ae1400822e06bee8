"""Benchmark: alignlab `prefs` (loss=dpo) against TRL's DPOTrainer on CPU, same work on both sides.

Same model folder, same preference pairs (the testbed's ranking export as conversational
prompt/chosen/rejected rows, the first steps × batch of them: one epoch), same batch size, max
length, number of optimiser steps, β, learning rate, thread count and LoRA settings; fp32; no
gradient checkpointing. Reference (`--reference`): `precomputed` (default) — both sides compute
the reference log-probs of every training pair once before training with the starting policy
(LoRA: adapter disabled), batch = the training batch, and keep no reference model (alignlab
`reference: precomputed`, TRL `precompute_ref_log_probs=True`, `ref_model=None`); the timed
region covers that pass and the training loop. `copy`: a frozen copy held in memory on both
sides (alignlab `reference: copy`, TRL an explicit deep-copied `ref_model`); LoRA always uses
the base weights with the adapter disabled. Modes (`--modes`): `full` fine-tune, `lora`
(r=16, α=32, dropout 0 on q/k/v/o_proj, both sides through peft).

Each run is its own subprocess, A/B interleaved, repeated; medians are reported, the speed-up is
the median of per-repetition ratios. Throughput = pairs per second of the timed region (after
model loading and tokenization). Memory = peak RSS of the process over the whole run (sampled
every 5 ms). Efficiency = counted FLOPs (benchmarks/flops.py: the pairs' work in alignlab's
layout — each prompt once, logits at response tokens, attention over the allowed block; policy
forward+backward plus the reference forward) / time, as GFLOP/s and as a fraction of the fp32
GEMM peak measured by the driver in the same run at the model's widths on the same thread count.
The same counted work is used for both sides, so the TRL column is task work per second.

    python benchmarks/bench_dpo_vs_trl.py                 # llama10m + smollm2, full + lora; writes RESULTS_dpo.md
    python benchmarks/bench_dpo_vs_trl.py --models student --modes full --steps 10 --reps 1

TRL is an optional benchmark dependency (`pip install 'alignlab[bench]'`); smollm2 needs `alignlab[real]`.
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
from typing import Any

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

LORA = {"r": 16, "alpha": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def make_models(folder: Path, names: list[str]) -> dict[str, tuple[Path, int]]:
    """Model folders and parameter counts: a testbed size, `llama10m` (a random-weight ~10M Llama
    sharing the testbed tokenizer) and/or `smollm2` (SmolLM2-135M-Instruct, the offline real model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from alignlab.testbed.build import ensure_testbed

    out: dict[str, tuple[Path, int]] = {}
    sizes = [m for m in names if m not in ("llama10m", "smollm2")]
    testbed = ensure_testbed(sizes[0] if sizes else "tiny")
    if sizes:
        out[sizes[0]] = (testbed, int(json.loads((testbed / "build_summary.json").read_text())["params"]))
    if "llama10m" in names:
        tok = AutoTokenizer.from_pretrained(testbed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=320, intermediate_size=864, num_hidden_layers=8,
                          num_attention_heads=5, num_key_value_heads=5, max_position_embeddings=512,
                          tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          bos_token_id=None)
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
        model.save_pretrained(folder / "llama10m")
        tok.save_pretrained(folder / "llama10m")
        out["llama10m"] = (folder / "llama10m", sum(p.numel() for p in model.parameters()))
    if "smollm2" in names:
        from alignlab.models.real import ensure_real_model

        real = ensure_real_model("smollm2")
        # the converted folder's config still names the GGUF quantization, which makes a fully
        # fine-tuned model unsavable: a copy whose config drops it (weights linked, not copied)
        path = folder / "smollm2"
        path.mkdir()
        for f in real.iterdir():
            if f.name != "config.json":
                (path / f.name).symlink_to(f)
        cfg = json.loads((real / "config.json").read_text())
        cfg.pop("quantization_config", None)
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        from transformers import AutoModelForCausalLM

        out["smollm2"] = (path, sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters()))
    return out


def make_data(folder: Path, n_trees: int, n_pairs: int) -> Path:
    """The first `n_pairs` conversational prompt/chosen/rejected rows from the testbed's ranked dialogue trees."""
    from alignlab.data.oasst import export_rm, read_trees
    from alignlab.data.preference import parse_row, to_pairs
    from alignlab.testbed.world import World

    trees_path = folder / "trees.jsonl"
    trees_path.write_text("".join(json.dumps(t) + "\n" for t in World().dialogue_trees(n=n_trees)))
    trees, _ = read_trees(trees_path)
    recs = [parse_row(r, f"export:{i}") for i, r in enumerate(export_rm(trees), 1)]
    rows = [{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in to_pairs(recs)]
    if len(rows) < n_pairs:
        raise SystemExit(f"only {len(rows)} pairs from {n_trees} trees; need {n_pairs} (raise --trees)")
    out = folder / f"pairs{n_pairs}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_pairs]))
    return out


def alternating(reps: int, first: str, second: str):
    """(repetition, side) in ABBA order, so each pair of adjacent runs shares the machine's state."""
    for rep in range(reps):
        for side in (first, second) if rep % 2 == 0 else (second, first):
            yield rep, side


def measure_peak(widths: tuple[int, ...], threads: int) -> dict:
    """The fp32 GEMM peak on `threads` threads at the model's widths (benchmarks/flops.py)."""
    import flops
    import torch

    torch.set_num_threads(threads)
    p = flops.gemm_peak(widths)
    return {"gflops": p.gflops, "size": p.size}


# --- workers -----------------------------------------------------------------------------------


def counted_flops(model: Any, items: list) -> float:
    """Policy forward+backward and one reference forward of every pair, in alignlab's layout."""
    import flops

    shape = flops.model_shape(model)
    tokens = sum(len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in items)
    head = sum(len(e.chosen_ids) + len(e.rejected_ids) for e in items)
    attended = sum(flops.prompt_pair_attended(len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids))
                   for e in items)
    return shape.train_flops(tokens, head, attended) + shape.forward_flops(tokens, head, attended)


def worker_ours(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from alignlab.config import load_config
    from alignlab.recipes import prefs
    from alignlab.train.loop import Trainer

    # time the reference pass and the training loop, as for TRL
    timing: dict[str, float] = {"seconds": 0.0, "cpu_seconds": 0.0}
    orig_fit, orig_pre = Trainer.fit, prefs.precompute_reference

    def timed_pre(model, items, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        out = orig_pre(model, items, *args, **kwargs)
        timing["seconds"] += time.perf_counter() - t
        timing["cpu_seconds"] += time.process_time() - c
        return out

    def timed_fit(self, items, *args, **kwargs):
        timing["flops"] = counted_flops(self.unwrapped, list(items))
        t, c = time.perf_counter(), time.process_time()
        out = orig_fit(self, items, *args, **kwargs)
        timing["seconds"] += time.perf_counter() - t
        timing["cpu_seconds"] += time.process_time() - c
        return out

    Trainer.fit, prefs.precompute_reference = timed_fit, timed_pre
    lora = (["model.lora.enabled=true", f"model.lora.r={LORA['r']}", f"model.lora.alpha={LORA['alpha']}",
             "model.lora.dropout=0.0", f"model.lora.target_modules={json.dumps(LORA['targets'])}"]
            if a.mode == "lora" else [])
    reference = "adapter" if a.mode == "lora" and a.reference == "copy" else a.reference
    cfg = load_config(prefs.PrefsConfig, None, [
        f"model.name_or_path={a.model}", f"data={a.data}", f"output_dir={a.out}", "preference.loss=dpo",
        f"preference.beta={a.beta}", f"reference={reference}", f"train.batch_size={a.batch}",
        f"train.max_steps={a.steps}", f"train.lr={a.lr}", "train.log_every=10", "train.save_every=0",
        "train.progress=false", "train.max_grad_norm=1.0", "eval_fraction=0", f"eval_batch_size={a.batch}",
        f"max_length={a.max_length}", f"max_prompt_length={a.max_length // 2}", *lora,
    ])
    with PeakRSS() as mem:
        before = _rss_mb()
        res = prefs.run(cfg)
    return {"side": "alignlab", "seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"],
            "pairs": a.steps * a.batch, "flops": timing["flops"],
            "peak_rss_mb": mem.peak, "rss_before_mb": before, "final_loss": res.metrics["loss"]}


def worker_trl(a: argparse.Namespace) -> dict:
    import copy

    import torch

    torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    timing = {"seconds": 0.0, "cpu_seconds": 0.0}
    orig_pre = DPOTrainer._precompute_ref_logps

    def timed_pre(self, *args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        out = orig_pre(self, *args, **kwargs)
        timing["seconds"] += time.perf_counter() - t
        timing["cpu_seconds"] += time.process_time() - c
        return out

    DPOTrainer._precompute_ref_logps = timed_pre
    rows = [json.loads(line) for line in Path(a.data).read_text().splitlines()]
    with PeakRSS() as mem:
        before = _rss_mb()
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
        ref = (copy.deepcopy(model).eval().requires_grad_(False)
               if a.reference == "copy" and a.mode == "full" else None)
        peft_config = None
        if a.mode == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                     target_modules=LORA["targets"], task_type="CAUSAL_LM")
        tok = AutoTokenizer.from_pretrained(a.model)
        args = DPOConfig(output_dir=a.out, per_device_train_batch_size=a.batch, max_steps=a.steps,
                         learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         max_grad_norm=1.0, beta=a.beta, loss_type=["sigmoid"], max_length=a.max_length,
                         precompute_ref_log_probs=a.reference == "precomputed", precompute_ref_batch_size=a.batch,
                         use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, logging_steps=10,
                         save_strategy="no", report_to=[], seed=0, dataloader_num_workers=0,
                         disable_tqdm=True, adam_epsilon=1e-8)
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=tok, peft_config=peft_config)
        t, c = time.perf_counter(), time.process_time()
        out = trainer.train()
        timing["seconds"] += time.perf_counter() - t
        timing["cpu_seconds"] += time.process_time() - c
    return {"side": "trl", "seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"],
            "pairs": a.steps * a.batch, "peak_rss_mb": mem.peak,
            "rss_before_mb": before, "final_loss": last_logged_loss(trainer, out.training_loss)}


def last_logged_loss(trainer: Any, fallback: float) -> float:
    """TRL's last logged loss (the mean of the last logging window, as alignlab's final `loss`)."""
    logged = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return logged[-1] if logged else fallback


# --- driver ------------------------------------------------------------------------------------


def run_worker(side: str, model: Path, data: Path, a: argparse.Namespace, out: Path, mode: str,
               steps: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(model), "--data", str(data),
           "--out", str(out), "--steps", str(steps), "--batch", str(batch), "--max-length", str(a.max_length),
           "--threads", str(a.threads), "--lr", str(a.lr), "--beta", str(a.beta), "--mode", mode,
           "--reference", a.reference]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"),
                                                                          os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{side} worker failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def model_widths(folder: Path) -> tuple[int, ...]:
    cfg = json.loads((folder / "config.json").read_text())
    return tuple(sorted({int(cfg["hidden_size"]), int(cfg.get("intermediate_size", cfg["hidden_size"]))}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["ours", "trl"])
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--mode", choices=["full", "lora"], default="full")
    ap.add_argument("--models", nargs="+", default=["llama10m", "smollm2"],
                    help="a testbed size, llama10m and/or smollm2 (default: llama10m smollm2)")
    ap.add_argument("--modes", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    ap.add_argument("--reference", choices=["precomputed", "copy"], default="precomputed")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--real-steps", type=int, default=4, help="steps for smollm2 (slow on CPU)")
    ap.add_argument("--real-batch", type=int, default=4, help="batch for smollm2")
    ap.add_argument("--real-reps", type=int, default=2, help="repetitions for smollm2")
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

    sys.path.insert(0, str(ROOT / "benchmarks"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_dpo_"))
    made = make_models(tmp, a.models)
    load_start = os.getloadavg()[0]
    table = []
    for name in a.models:
        folder, params = made[name]
        steps, batch, reps = ((a.real_steps, a.real_batch, a.real_reps) if name == "smollm2"
                              else (a.steps, a.batch, a.reps))
        data = make_data(tmp, a.trees, steps * batch)
        for mode in a.modes:
            peak = measure_peak(model_widths(folder), a.threads)
            runs: dict[str, list[dict]] = {"alignlab": [], "trl": []}
            for rep, side in alternating(reps, "ours", "trl"):
                r = run_worker(side, folder, data, a, tmp / f"{name}-{mode}-{side}-{rep}", mode, steps, batch)
                runs[r["side"]].append(r)
                print(f"{name} {mode} rep {rep} {r['side']}: {r['pairs'] / r['seconds']:.2f} pairs/s, "
                      f"{r['cpu_seconds']:.1f} CPU s, "
                      f"peak {r['peak_rss_mb']:.0f} MB, load {os.getloadavg()[0]:.1f}", flush=True)
            peak = max(peak, measure_peak(model_widths(folder), a.threads), key=lambda p: p["gflops"])
            table.append(summarise(name, params, mode, steps, batch, runs, peak))
    write_results(Path(a.results), table, a, load_start, os.getloadavg()[0])
    print(Path(a.results).read_text())


def summarise(name: str, params: int, mode: str, steps: int, batch: int, runs: dict[str, list[dict]],
              peak: dict) -> dict:
    """Medians per side, the paired speed-up and the efficiency of one model × mode."""
    med = {s: {k: statistics.median(x[k] for x in v) for k in ("seconds", "peak_rss_mb")} for s, v in runs.items()}
    # runs of one repetition are adjacent in time (similar machine load): their ratio is the fairest
    paired = statistics.median(t["seconds"] / o["seconds"] for o, t in zip(runs["alignlab"], runs["trl"]))
    # process CPU time: what each side computed, less sensitive than wall time to other jobs on the machine
    paired_cpu = statistics.median(t["cpu_seconds"] / o["cpu_seconds"] for o, t in zip(runs["alignlab"], runs["trl"]))
    work = runs["alignlab"][0]["flops"]
    pairs = steps * batch
    return {
        "model": name, "params": params, "mode": mode, "steps": steps, "batch": batch,
        "ours_pairs_s": pairs / med["alignlab"]["seconds"], "trl_pairs_s": pairs / med["trl"]["seconds"],
        "speedup": paired, "speedup_cpu": paired_cpu, "ours_peak_mb": med["alignlab"]["peak_rss_mb"], "trl_peak_mb": med["trl"]["peak_rss_mb"],
        "ours_gflops": work / med["alignlab"]["seconds"] / 1e9, "trl_gflops": work / med["trl"]["seconds"] / 1e9,
        "peak_gflops": peak["gflops"], "peak_size": peak["size"],
        "ours_runs": [round(pairs / r["seconds"], 2) for r in runs["alignlab"]],
        "trl_runs": [round(pairs / r["seconds"], 2) for r in runs["trl"]],
        "ours_cpu": [round(r["cpu_seconds"], 1) for r in runs["alignlab"]],
        "trl_cpu": [round(r["cpu_seconds"], 1) for r in runs["trl"]],
    }


def write_results(path: Path, table: list[dict], a: argparse.Namespace, load_start: float, load_end: float) -> None:
    import datetime
    import platform

    import torch
    import transformers
    import trl

    ref = ("reference log-probs precomputed before training on both sides (timed), no reference model kept"
           if a.reference == "precomputed" else "reference model held in memory on both sides (LoRA: adapter disabled)")
    lines = [
        "# DPO: alignlab vs TRL DPOTrainer (CPU)", "",
        f"Command: `python benchmarks/bench_dpo_vs_trl.py --models {' '.join(a.models)} --modes {' '.join(a.modes)} "
        f"--reference {a.reference} --steps {a.steps} --batch {a.batch} --real-steps {a.real_steps} "
        f"--real-batch {a.real_batch} --real-reps {a.real_reps} --max-length {a.max_length} --threads {a.threads} "
        f"--reps {a.reps}`", "",
        f"Run {datetime.date.today().isoformat()}, load average {load_start:.1f} at start, {load_end:.1f} at end. "
        f"Setup: one epoch of steps × batch pairs (table), max_length {a.max_length}, fp32, {a.threads} thread(s) "
        f"per process, β={a.beta}, lr={a.lr}, {ref}; LoRA r={LORA['r']} α={LORA['alpha']} on "
        f"{'/'.join(LORA['targets'])}; no gradient checkpointing; data: the testbed ranking export. "
        f"torch {torch.__version__}, transformers {transformers.__version__}, TRL {trl.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs. Median of {a.reps} interleaved runs "
        "per side (smollm2: --real-reps).", "",
        "Speed-up = median over repetitions of (TRL time / alignlab time) of the two adjacent runs, in wall time "
        "and in process CPU time (the CPU figure is less sensitive to other jobs on a shared machine). Peak RSS = "
        "whole process. GFLOP/s = counted FLOPs of the pairs (benchmarks/flops.py; alignlab's layout, policy "
        "forward+backward + reference forward; the same count for both sides) / time; % = of the fp32 GEMM peak "
        "measured in this run at the model's widths on the same threads.", "",
        "| model (params) | mode | steps × pairs | alignlab pairs/s | TRL pairs/s | speed-up (wall) | speed-up (CPU) "
        "| alignlab GFLOP/s (% peak) | TRL GFLOP/s (% peak) | GEMM peak GFLOP/s | alignlab peak RSS MB | TRL peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        pk = r["peak_gflops"]
        lines.append(
            f"| {r['model']} ({r['params'] / 1e6:.1f}M) | {r['mode']} | {r['steps']} × {r['batch']} | "
            f"{r['ours_pairs_s']:.2f} | {r['trl_pairs_s']:.2f} | {r['speedup']:.2f}× | {r['speedup_cpu']:.2f}× | "
            f"{r['ours_gflops']:.1f} ({100 * r['ours_gflops'] / pk:.0f} %) | {r['trl_gflops']:.1f} "
            f"({100 * r['trl_gflops'] / pk:.0f} %) | {pk:.0f} (n={r['peak_size']}) | {r['ours_peak_mb']:.0f} | "
            f"{r['trl_peak_mb']:.0f} |")
    lines += ["", "Per-run pairs/s: " + "; ".join(f"{r['model']} {r['mode']}: alignlab {r['ours_runs']}, TRL "
                                                f"{r['trl_runs']}" for r in table),
              "", "Per-run CPU seconds: " + "; ".join(f"{r['model']} {r['mode']}: alignlab {r['ours_cpu']}, TRL "
                                                    f"{r['trl_cpu']}" for r in table), ""]
    marker = "<!-- measurements below are kept when the benchmark is rerun -->"
    kept = path.read_text().split(marker, 1)[1] if path.exists() and marker in path.read_text() else "\n"
    path.write_text("\n".join(lines) + "\n" + marker + kept)


if __name__ == "__main__":
    main()
