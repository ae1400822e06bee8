"""GPU benchmark: alignlab SFT, DPO and PPO on random-weight models of real sizes, beside TRL's
DPOTrainer and RLOOTrainer on the same model, data shape and settings; prints a Markdown table.

Models (random weights from configs written below, nothing downloaded): Qwen2.5-0.5B, Llama-3.2-1B,
and an 8B-sized Llama trained with LoRA (r 16 on every projection, base weights frozen in bf16).
Data: synthetic token ids through a word-level tokenizer of the model's vocabulary ("t123" -> 123),
so both sides see the same tokens; every prompt and response has a fixed length (no padding).
Settings on both sides: bf16 autocast with fp32 master weights (LoRA: fp32 adapters), AdamW, max
grad norm 1.0, sdpa attention, no gradient checkpointing, no compile, the same batch and lengths.
DPO: the reference log-probs are precomputed before the timed steps and held in memory (alignlab
`reference: precomputed`, TRL `precompute_ref_log_probs=True`). PPO (alignlab, 0.5B only): 64
completions per step (TRL RLOO: 16 prompts x 4 generations), KL 0.05 against a frozen copy, one
epoch, HF-free KV-cache sampling on our side, `generate` on TRL's.

Measured per part (its own subprocess, so peak memory is its own): median step time after warm-up
steps, tokens/s, peak memory (`torch.cuda.max_memory_allocated`, from model build to the last step;
on a CPU the process's peak RSS), and for PPO the generation share of a step.

FLOPs and MFU (PaLM convention, dense, no causal halving). N = parameters that multiply
activations for every token: all decoder Linear weights plus the LM head (V·d; the input embedding
lookup is free). L layers, d hidden size, T the length of the sequence the token is in.
    trained token, full fine-tuning:   6·N + 12·L·d·T   (forward 2N, backward 4N; attention
                                                        QKᵀ and AV 4·L·d·T forward, x3 with backward)
    trained token, LoRA (frozen base): 4·N + 12·L·d·T   (no weight gradients; adapter FLOPs ignored)
    reference-forward token:           2·N +  4·L·d·T
SFT: every token of a row (prompt + response) is trained. DPO: a pair is two sequences, (prompt,
chosen) and (prompt, rejected), 2P + C + R trained tokens (the reference forward ran before the
timed steps and is not in them). alignlab computes the shared prompt once (P + C + R tokens), so
its DPO "MFU" is effective (work of the unshared layout per second); "MFU (done)" counts only the
tokens it runs. MFU = FLOPs per step / step time / peak, peak = dense bf16 of the device from
PEAK_TFLOPS by name (H100 / H200 989, A100 312), else a measured 8192³ bf16 matmul ("measured").
PPO rows give tokens/s (prompt + response tokens of the rollout per step) and generation share, no MFU.

    python benchmarks/gpu/bench_gpu.py --out runs/gpu_bench             # everything (H200: ~5 min)
    python benchmarks/gpu/bench_gpu.py --models qwen2.5-0.5b --parts dpo trl-dpo
    python benchmarks/gpu/bench_gpu.py --smoke                          # tiny model, 2 steps, CPU ok

TRL is optional (`pip install 'alignlab[bench]'`); without it its rows are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, by device name


@dataclass(frozen=True)
class Shape:
    """A model config (random weights) and the batch shapes run on it."""

    arch: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    lora: bool = False
    batch: int = 8  # SFT rows / DPO pairs per step
    prompt: int = 256  # P
    response: int = 256  # C = R (DPO); SFT rows are P + 3·response tokens
    ppo_prompt: int = 64
    ppo_new: int = 128


MODELS: dict[str, Shape] = {
    "qwen2.5-0.5b": Shape("qwen2", 896, 24, 14, 2, 4864, 151936, tied=True),
    "llama-3.2-1b": Shape("llama", 2048, 16, 32, 8, 8192, 128256, tied=True),
    "llama-8b-lora": Shape("llama", 4096, 32, 32, 8, 14336, 128256, tied=False, lora=True, batch=4),
    "smoke": Shape("llama", 64, 2, 4, 2, 128, 512, tied=True, batch=4, prompt=8, response=8, ppo_prompt=8,
                   ppo_new=8),
}
PARTS = ["sft-dpo", "trl-dpo", "ppo", "trl-rloo"]  # sft-dpo: alignlab SFT then DPO in one process
PPO_MODELS = {"qwen2.5-0.5b", "smoke"}
COMPLETIONS, GENERATIONS, KL, LR, BETA = 64, 4, 0.05, 1e-6, 0.1
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --- model, tokenizer, data -----------------------------------------------------------------------


def hf_config(s: Shape):
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[s.arch]
    return cls(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
               num_key_value_heads=s.kv_heads, intermediate_size=s.intermediate, tie_word_embeddings=s.tied,
               max_position_embeddings=4096, pad_token_id=0, eos_token_id=1, bos_token_id=None)


def build_model(s: Shape, device: str):
    """Random weights (seed 0) built on `device`: fp32 master weights, or bf16 frozen base for LoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if s.lora else torch.float32
    with torch.device(device):
        return AutoModelForCausalLM.from_config(hf_config(s), dtype=dtype, attn_implementation="sdpa")


def matmul_params(s: Shape) -> int:
    """N of the FLOP count: decoder Linear weights + LM head (the embedding lookup is free)."""
    head_dim = s.hidden // s.heads
    attn = s.hidden * head_dim * (2 * s.heads + 2 * s.kv_heads)
    mlp = 3 * s.hidden * s.intermediate
    return s.layers * (attn + mlp) + s.vocab * s.hidden


def flops_per_token(s: Shape, seq_len: int, trained: bool = True) -> float:
    n, att = matmul_params(s), 4 * s.layers * s.hidden * seq_len
    if not trained:
        return 2 * n + att
    return (4 if s.lora else 6) * n + 3 * att


def synthetic_tokenizer(vocab: int):
    """Word-level tokenizer of `vocab` ids: '<pad>' 0, '<eos>' 1, '<unk>' 2, 't3' .. 't{vocab-1}'."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"t{i}": i for i in range(3, vocab)}}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def token_rows(n: int, length: int, vocab: int, seed: int, eos: bool = False) -> list[list[int]]:
    import random

    rng = random.Random(seed)
    body = length - 1 if eos else length
    return [[rng.randrange(3, vocab) for _ in range(body)] + ([1] if eos else []) for _ in range(n)]


def text(ids: list[int]) -> str:
    return " ".join("<eos>" if i == 1 else f"t{i}" for i in ids)


def dpo_rows(s: Shape, n: int) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """n (prompt, chosen, rejected) id lists; responses end with EOS (as TRL appends it)."""
    return (token_rows(n, s.prompt, s.vocab, 1), token_rows(n, s.response, s.vocab, 2, eos=True),
            token_rows(n, s.response, s.vocab, 3, eos=True))


# --- measuring ------------------------------------------------------------------------------------


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS
        except OSError:
            pass


def peak_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


class StepTimer:
    """Wall time of each step, the device synchronised at both ends."""

    def __init__(self, device: str):
        self.device, self.times, self._t = device, [], 0.0

    def start(self) -> None:
        sync(self.device)
        self._t = time.perf_counter()

    def stop(self) -> None:
        sync(self.device)
        self.times.append(time.perf_counter() - self._t)


def result(model: str, task: str, side: str, times: list[float], warmup: int, tokens: float, flops: float,
           device: str, **extra: Any) -> dict[str, Any]:
    measured = times[warmup:] or times
    step = statistics.median(measured)
    return {"model": model, "task": task, "side": side, "step_s": step, "steps": len(measured),
            "tokens_per_s": tokens / step, "flops_per_step": flops, "peak_gib": peak_gib(device), **extra}


# --- alignlab parts -------------------------------------------------------------------------------


def _trainer(model, s: Shape, device: str, batch: int, out: Path):
    from alignlab.config import LoraSettings, ModelSettings, TrainSettings
    from alignlab.models.loading import apply_lora, prepare_for_training
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer

    if s.lora:
        model = apply_lora(model, LoraSettings(enabled=True, r=16, alpha=32, target_modules=LORA_TARGETS))
    prepare_for_training(model, ModelSettings(name_or_path="random"))
    cfg = TrainSettings(lr=LR, batch_size=batch, mixed_precision="bf16", progress=False, save_every=0,
                        max_grad_norm=1.0)
    return Trainer(model, cfg, RunDir(out, lock=False))


def ours_sft(key: str, s: Shape, device: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    from alignlab.data.chat import Encoded, collate
    from alignlab.losses.lm import causal_lm_loss

    reset_peak(device)
    trainer = _trainer(build_model(s, device), s, device, s.batch, out / "sft")
    length = s.prompt + 3 * s.response
    rows = token_rows(s.batch * (steps + warmup), length, s.vocab, 4)
    items = [Encoded(r, [0] * s.prompt + [1] * (length - s.prompt)) for r in rows]
    timer = StepTimer(device)
    for i in range(steps + warmup):
        batch = collate(items[i * s.batch:(i + 1) * s.batch], 0)
        timer.start()
        trainer.step(causal_lm_loss, [batch])
        timer.stop()
    tokens = s.batch * length
    return result(key, "SFT", "alignlab", timer.times, warmup, tokens, tokens * flops_per_token(s, length), device,
                  row_tokens=length)


def ours_dpo(key: str, s: Shape, device: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    from alignlab.data.preference_batches import EncodedPair
    from alignlab.losses.preference import PreferenceLossSettings
    from alignlab.recipes import prefs

    reset_peak(device)
    trainer = _trainer(build_model(s, device), s, device, s.batch, out / "dpo")
    prompts, chosen, rejected = dpo_rows(s, s.batch * (steps + warmup))
    items = [EncodedPair(p, c, r) for p, c, r in zip(prompts, chosen, rejected)]
    t0 = time.perf_counter()
    prefs.precompute_reference(trainer.unwrapped, items, 0, s.batch, False, trainer, disable_adapter=s.lora)
    sync(device)
    ref_s = time.perf_counter() - t0
    collate = prefs.pair_collator(trainer.unwrapped, 0)
    loss_fn = prefs.make_loss_fn(prefs.PrefsConfig(preference=PreferenceLossSettings(loss="dpo", beta=BETA)))
    timer = StepTimer(device)
    for i in range(steps + warmup):
        batch = collate(items[i * s.batch:(i + 1) * s.batch])
        timer.start()
        trainer.step(loss_fn, [batch])
        timer.stop()
    seq = s.prompt + s.response
    logical = s.batch * 2 * seq  # 2P + C + R per pair
    done = s.batch * (s.prompt + 2 * s.response)  # the shared prompt once
    return result(key, "DPO", "alignlab", timer.times, warmup, logical, logical * flops_per_token(s, seq), device,
                  flops_done=done * flops_per_token(s, seq), reference_precompute_s=ref_s)


def save_model_folder(s: Shape, device: str, folder: Path) -> Path:
    """The random model (bf16 on disk, loaded back in fp32) and the synthetic tokenizer, for recipes."""
    import torch

    model = build_model(s, device)
    model.to(torch.bfloat16).save_pretrained(folder)
    synthetic_tokenizer(s.vocab).save_pretrained(folder)
    del model
    return folder


def prompts_file(s: Shape, n: int, folder: Path) -> Path:
    path = folder / "prompts.txt"
    path.write_text("".join(text(r) + "\n" for r in token_rows(n, s.ppo_prompt, s.vocab, 5)))
    return path


def ours_ppo(key: str, s: Shape, device: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    from alignlab.config import load_config
    from alignlab.recipes import ppo
    from alignlab.runs import read_metrics

    folder = save_model_folder(s, device, out / "model")
    prompts = prompts_file(s, COMPLETIONS * (steps + warmup) + 16, out)
    reset_peak(device)
    cfg = load_config(ppo.PPOConfig, None, [
        f"model.name_or_path={folder}", f"prompts={prompts}", "reward=gold:sentiment", "eval.every=0",
        "eval.n_prompts=8", f"n_prompts={COMPLETIONS * (steps + warmup)}", f"generation.max_new_tokens={s.ppo_new}",
        f"generation.batch_size={COMPLETIONS}", f"ppo.iterations={steps + warmup}", f"ppo.rollout_batch={COMPLETIONS}",
        "ppo.epochs=1", f"ppo.kl_coef={KL}", f"train.batch_size={COMPLETIONS}", f"train.lr={LR}",
        "train.mixed_precision=bf16", "train.progress=false", "train.save_every=0", "train.log_every=1",
        f"output_dir={out / 'ppo'}"])
    ppo.run(cfg)
    recs = [r for r in read_metrics(out / "ppo" / "metrics.jsonl") if "time_update" in r]
    times = [r["time_collect"] + r["time_update"] for r in recs]
    gen = [r["time_generate"] for r in recs][warmup:]
    resp = statistics.mean(r["response_len"] for r in recs[warmup:])
    tokens = COMPLETIONS * (s.ppo_prompt + resp)
    return result(key, "PPO", "alignlab", times, warmup, tokens, float("nan"), device,
                  generation_share=sum(gen) / sum(times[warmup:]),
                  generation_tokens_per_s=COMPLETIONS * resp * len(gen) / sum(gen), response_len=resp)


# --- TRL parts ------------------------------------------------------------------------------------


def _trl_timer(device: str, after_step=None):
    """(StepTimer, TrainerCallback filling it); `after_step()` runs after each timed step."""
    from transformers import TrainerCallback

    timer = StepTimer(device)

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timer.start()

        def on_step_end(self, args, state, control, **kw):
            timer.stop()
            if after_step is not None:
                after_step()

    return timer, Timer()


def _trl_common(device: str, out: Path, steps: int, warmup: int) -> dict[str, Any]:
    return dict(output_dir=str(out), max_steps=steps + warmup, learning_rate=LR, lr_scheduler_type="constant",
                warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, bf16=True, fp16=False,
                gradient_checkpointing=False, logging_steps=10_000, save_strategy="no", report_to=[], seed=0,
                disable_tqdm=True, use_cpu=device == "cpu", dataloader_num_workers=0)


def trl_dpo(key: str, s: Shape, device: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    reset_peak(device)
    model = build_model(s, device)
    peft = None
    if s.lora:
        from peft import LoraConfig

        peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    prompts, chosen, rejected = dpo_rows(s, s.batch * (steps + warmup))
    ds = Dataset.from_list([{"prompt": text(p), "chosen": " " + text(c), "rejected": " " + text(r)}
                            for p, c, r in zip(prompts, chosen, rejected)])
    args = DPOConfig(per_device_train_batch_size=s.batch, beta=BETA, loss_type=["sigmoid"],
                     max_length=s.prompt + s.response, precompute_ref_log_probs=True, **_trl_common(device, out, steps,
                                                                                                      warmup))
    timer, callback = _trl_timer(device)
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=synthetic_tokenizer(s.vocab),
                         peft_config=peft, callbacks=[callback])
    row = trainer.train_dataset[0]
    assert (len(row["prompt_ids"]), len(row["chosen_ids"])) == (s.prompt, s.response), "tokenization differs"
    trainer.train()
    seq = s.prompt + s.response
    logical = s.batch * 2 * seq
    flops = logical * flops_per_token(s, seq)
    return result(key, "DPO", "TRL DPOTrainer", timer.times, warmup, logical, flops, device, flops_done=flops)


def trl_rloo(key: str, s: Shape, device: str, steps: int, warmup: int, out: Path) -> dict[str, Any]:
    import transformers
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    from alignlab.testbed.lexicon import sentiment_reward  # what alignlab's gold:sentiment is

    folder = save_model_folder(s, device, out / "model")
    gen_time, lengths = [0.0], []
    real_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *a, **k):
        sync(device)
        t = time.perf_counter()
        try:
            return real_generate(self, *a, **k)
        finally:
            sync(device)
            gen_time[0] += time.perf_counter() - t

    transformers.GenerationMixin.generate = timed_generate

    def reward(prompts, completions, completion_ids=None, **kw):
        if completion_ids is not None:
            lengths.append(sum(len(c) for c in completion_ids) / len(completion_ids))
        return [sentiment_reward(c) for c in completions]

    rows = token_rows(COMPLETIONS // GENERATIONS * (steps + warmup), s.ppo_prompt, s.vocab, 5)
    reset_peak(device)
    args = RLOOConfig(per_device_train_batch_size=COMPLETIONS, gradient_accumulation_steps=1,
                      num_generations=GENERATIONS, max_completion_length=s.ppo_new, temperature=1.0, top_p=1.0,
                      beta=KL, num_iterations=1, shuffle_dataset=False, model_init_kwargs={"dtype": "float32"},
                      **_trl_common(device, out, steps, warmup))
    gens: list[float] = []  # generation seconds so far, after each step
    timer, callback = _trl_timer(device, lambda: gens.append(gen_time[0]))
    trainer = RLOOTrainer(model=str(folder), reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_dict({"prompt": [text(r) for r in rows]}), callbacks=[callback],
                          processing_class=synthetic_tokenizer(s.vocab))
    trainer.train()
    per_step = [b - a for a, b in zip([0.0, *gens], gens)][warmup:]
    resp = statistics.mean(lengths[warmup:]) if lengths[warmup:] else float(s.ppo_new)
    tokens = COMPLETIONS * (s.ppo_prompt + resp)
    return result(key, "PPO", "TRL RLOO", timer.times, warmup, tokens, float("nan"), device,
                  generation_share=sum(per_step) / sum(timer.times[warmup:]),
                  generation_tokens_per_s=COMPLETIONS * resp * len(per_step) / max(sum(per_step), 1e-9),
                  response_len=resp)


# --- driver ---------------------------------------------------------------------------------------


def run_part(part: str, key: str, device: str, steps: int, warmup: int, work: Path,
             ppo_steps: int = 4) -> list[dict[str, Any]]:
    """The rows of one part, in this process (model folders and run dirs under `work`)."""
    s = MODELS[key]
    folder = work / f"{key}-{part}"
    folder.mkdir(parents=True, exist_ok=True)
    if part == "sft-dpo":
        rows = [ours_sft(key, s, device, steps, warmup, folder)]
        import gc

        import torch

        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        return rows + [ours_dpo(key, s, device, steps, warmup, folder)]
    if part == "trl-dpo":
        return [trl_dpo(key, s, device, steps, warmup, folder)]
    fn = {"ppo": ours_ppo, "trl-rloo": trl_rloo}[part]
    return [fn(key, s, device, ppo_steps, min(warmup, 1), folder)]


def peak_tflops(device: str) -> tuple[float, str]:
    """(dense bf16 TFLOP/s, source): the spec of a known device, else a measured bf16 matmul."""
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    for k, v in PEAK_TFLOPS.items():
        if k in name:
            return v, f"{name} (spec {v:g} TFLOP/s)"
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    a @ b
    reps = 20 if device == "cuda" else 3
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    v = 2 * n**3 * reps / (time.perf_counter() - t) / 1e12
    return v, f"{name} (measured {v:.1f} TFLOP/s, {n}³ bf16 matmul)"


def versions() -> dict[str, str]:
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": str(torch.version.cuda)}
    out["trl"] = __import__("trl").__version__ if importlib.util.find_spec("trl") else "not installed"
    return out


def table(rows: list[dict[str, Any]], peak: float) -> str:
    """Markdown rows: one per (model, task, side), with alignlab / TRL ratios where both ran."""
    head = ("| model | task | side | step s | tokens/s | MFU | MFU (done) | peak GiB | gen share | gen tok/s "
            "| tokens/s vs TRL | memory vs TRL |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    peer = {(r["model"], r["task"]): r for r in rows if r["side"].startswith("TRL")}

    def pct(f: float, step: float) -> str:
        return "—" if f != f else f"{100 * f / step / (peak * 1e12):.1f} %"

    lines = [head]
    for r in rows:
        p = peer.get((r["model"], r["task"])) if r["side"] == "alignlab" else None
        speed = f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}x" if p else ""
        mem = f"{r['peak_gib'] / p['peak_gib']:.2f}x" if p else ""
        gen = f"{100 * r['generation_share']:.0f} %" if "generation_share" in r else ""
        gen_tps = f"{r['generation_tokens_per_s']:,.0f}" if "generation_tokens_per_s" in r else ""
        lines.append(f"| {r['model']} | {r['task']} | {r['side']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} "
                     f"| {pct(r['flops_per_step'], r['step_s'])} | {pct(r.get('flops_done', float('nan')), r['step_s'])} "
                     f"| {r['peak_gib']:.2f} | {gen} | {gen_tps} | {speed} | {mem} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=[m for m in MODELS if m != "smoke"], choices=list(MODELS))
    ap.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    ap.add_argument("--steps", type=int, default=6, help="measured SFT / DPO steps per part")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="runs/gpu_bench", help="results.jsonl, table.md, settings.json")
    ap.add_argument("--work", default="", help="model folders and run dirs (default: a temp folder)")
    ap.add_argument("--ppo-steps", type=int, default=4, help="measured PPO / RLOO steps (one warm-up)")
    ap.add_argument("--part-timeout", type=int, default=240, help="seconds per part (its subprocess)")
    ap.add_argument("--budget", type=int, default=0, help="stop starting parts after this many seconds (0: none)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, 2 steps (1 warm-up), parts in this process")
    ap.add_argument("--inline", action="store_true", help="run parts in this process (no per-part memory)")
    ap.add_argument("--worker", nargs=2, metavar=("PART", "MODEL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    own_work = not a.work
    if own_work:
        import tempfile

        a.work = tempfile.mkdtemp(prefix="alignlab-gpu-bench-")
    work = Path(a.work)
    if a.smoke:
        a.models, a.steps, a.warmup, a.ppo_steps, a.inline = ["smoke"], 1, 1, 1, True
    if device == "cpu" and a.models != ["smoke"]:
        sys.exit("no CUDA device: the real-size models need a GPU; use --smoke for the CPU check")
    if a.worker:
        for row in run_part(a.worker[0], a.worker[1], device, a.steps, a.warmup, work, a.ppo_steps):
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
        return
    results.unlink(missing_ok=True)
    have_trl = importlib.util.find_spec("trl") is not None
    start, failures = time.perf_counter(), []
    for key in a.models:
        for part in a.parts:
            if (part.startswith("trl") and not have_trl) or (part in ("ppo", "trl-rloo") and key not in PPO_MODELS):
                continue
            left = a.budget - (time.perf_counter() - start) if a.budget else a.part_timeout
            if left < 30:
                failures.append(f"{key} {part}: not started (budget spent)")
                continue
            t = time.perf_counter()
            try:
                if a.inline:
                    from accelerate.state import AcceleratorState

                    AcceleratorState._reset_state(reset_partial_state=True)
                    with results.open("a") as f:
                        for row in run_part(part, key, device, a.steps, a.warmup, work, a.ppo_steps):
                            f.write(json.dumps(row) + "\n")
                else:
                    cmd = [sys.executable, __file__, "--worker", part, key, "--steps", str(a.steps), "--warmup",
                           str(a.warmup), "--ppo-steps", str(a.ppo_steps), "--out", str(out), "--work", str(work)]
                    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
                               HF_DATASETS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
                    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                       timeout=min(a.part_timeout, left))
                    if p.returncode != 0:
                        failures.append(f"{key} {part}: exit {p.returncode}: {p.stderr.strip()[-1500:]}")
            except subprocess.TimeoutExpired:
                failures.append(f"{key} {part}: timed out")
            except Exception as e:  # noqa: BLE001  (one part failing must not lose the others' rows)
                failures.append(f"{key} {part}: {type(e).__name__}: {e}")
            print(f"[{time.perf_counter() - start:6.0f} s] {key} {part}: {time.perf_counter() - t:.0f} s",
                  file=sys.stderr, flush=True)
    if own_work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    peak, peak_src = peak_tflops(device)
    v = versions()
    report = [f"Device: {peak_src}; torch {v['torch']} (CUDA {v['cuda']}), transformers {v['transformers']}, "
              f"TRL {v['trl']}; median of {a.steps} SFT/DPO steps after {a.warmup} warm-up, "
              f"{a.ppo_steps} PPO/RLOO steps after 1.", "",
              table(rows, peak)]
    if failures:
        report += ["", "Parts that did not finish:", *[f"- {f}" for f in failures]]
    text_out = "\n".join(report)
    print(text_out)
    (out / "table.md").write_text(text_out + "\n")
    (out / "settings.json").write_text(json.dumps({"models": {k: asdict(MODELS[k]) for k in a.models},
                                                   "versions": v, "peak_tflops": peak}, indent=1))


if __name__ == "__main__":
    main()
