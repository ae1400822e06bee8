"""Build (or reuse) the testbed tokenizer and base models, cached by content hash.

`ensure_testbed("student")` returns a folder that `AutoModelForCausalLM.from_pretrained`
and `AutoTokenizer.from_pretrained` both load. Folders are built in a temp dir and renamed,
so an interrupted build never leaves a half model behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from alignlab.config import TrainSettings
from alignlab.paths import cache_root
from alignlab.runs import RunDir
from alignlab.testbed.dialogues import dialogue_texts
from alignlab.testbed.sizes import SIZES, ModelSize  # noqa: F401  (re-exported)
from alignlab.testbed.tokenizer import train_tokenizer
from alignlab.testbed.world import World, WorldConfig

BUILD_VERSION = "2"


def _size_hash(world: World, size: ModelSize) -> str:
    blob = json.dumps({"w": world.fingerprint, "s": asdict(size), "v": BUILD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def corpus_texts(world: World, tokenizer=None) -> list[str]:
    """Pretraining documents: the world's text plus chat-formatted dialogues."""
    docs = world.documents()
    convs = dialogue_texts(world.dialogue_trees()) + world.chats()
    if tokenizer is None:
        from alignlab.testbed.tokenizer import CHAT_TEMPLATE  # noqa: F401  (template only)

        rendered = [" ".join(m["content"] for m in c) for c in convs]
    else:
        rendered = [tokenizer.apply_chat_template(c, tokenize=False) for c in convs]
    return docs + rendered


def ensure_tokenizer(world: World, root: Path | None = None):
    """Train (once) and load the world's tokenizer."""
    path = (root or cache_root()) / "testbed" / world.fingerprint / "tokenizer"
    if not (path / "tokenizer.json").exists():
        tok = train_tokenizer(corpus_texts(world))
        tmp = path.with_name(f".tmp-tokenizer-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(tmp)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    return AutoTokenizer.from_pretrained(path)


def _blocks(tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    """Concatenate documents (each ended by EOS) and cut into fixed blocks."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for e in enc:
        ids.extend(e)
        if not e or e[-1] != eos:
            ids.append(eos)
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def _model_config(tokenizer, size: ModelSize) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


@torch.no_grad()
def evaluate_base(model, tokenizer, world: World, val_blocks: torch.Tensor, train_blocks: torch.Tensor) -> dict[str, float]:
    """Held-out perplexity vs a unigram baseline, and true-vs-myth fact preference."""
    from alignlab.scoring import score_completions

    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(val_blocks), 32):
        b = val_blocks[i : i + 32]
        out = model(input_ids=b, labels=b)
        nll += float(out.loss) * b.numel()
        count += b.numel()
    ppl = math.exp(nll / max(1, count))
    counts = torch.bincount(train_blocks.flatten(), minlength=len(tokenizer)).float() + 1
    logp = (counts / counts.sum()).log()
    uni = math.exp(float(-logp[val_blocks.flatten()].mean()))
    facts = world.facts
    prompts = ["fact :"] * (2 * len(facts))
    comps = [" " + f.statement(f.truth) for f in facts] + [" " + f.statement(f.myth) for f in facts]
    s = score_completions(model, tokenizer, prompts, comps)
    fact_acc = sum(s[i] > s[i + len(facts)] for i in range(len(facts))) / len(facts)
    qa = score_completions(model, tokenizer, [f.question for f in facts] * 2,
                           [f" {f.truth} ." for f in facts] + [f" {f.myth} ." for f in facts])
    right = [qa[i] > qa[i + len(facts)] for i in range(len(facts))]
    major = [f.myth_major for f in facts]

    def share(keep: bool) -> float:
        picked = [r for r, m in zip(right, major) if m == keep]
        return sum(picked) / len(picked) if picked else float("nan")

    return {"val_ppl": ppl, "unigram_ppl": uni, "fact_true_vs_myth": fact_acc, "qa_true_vs_myth": sum(right) / len(facts),
            "qa_true_vs_myth_minority": share(False), "qa_true_vs_myth_majority": share(True)}


def build_model(size_name: str, world: World | None = None, out: Path | None = None,
                progress: bool = True, root: Path | None = None) -> Path:
    """Pretrain one base model on the world's corpus and save it (with its tokenizer)."""
    from alignlab.losses.lm import causal_lm_loss
    from alignlab.threads import busy_cores, cpu_threads, threads_for_machine
    from alignlab.train.loop import Trainer, seed_everything

    world = world or World(WorldConfig())
    size = SIZES[size_name]
    # threads from the cores *other* processes keep busy (the load average would also count this
    # process's own tokenizer training a moment before and pick one thread on a quiet machine)
    load0, busy0 = os.getloadavg()[0], busy_cores()
    threads = threads_for_machine(busy=busy0)
    t0, cpu0 = time.time(), time.process_time()
    tokenizer = ensure_tokenizer(world, root)
    seed_everything(0)
    blocks = _blocks(tokenizer, corpus_texts(world, tokenizer), size.seq_len)
    n_val = max(8, len(blocks) // 50)
    val, train = blocks[:n_val], blocks[n_val:]
    model = LlamaForCausalLM(_model_config(tokenizer, size))
    cfg = TrainSettings(lr=size.lr, batch_size=size.batch_size, max_steps=size.steps, warmup_steps=size.steps // 20,
                        lr_schedule="cosine", weight_decay=0.01, log_every=max(1, size.steps // 20), save_every=0,
                        progress=progress, seed=0)
    dest = out or (root or cache_root()) / "testbed" / world.fingerprint / f"{size_name}-{_size_hash(world, size)}"
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run = RunDir(tmp / "pretrain")
    trainer = Trainer(model, cfg, run)
    data = [{"input_ids": b} for b in train]

    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.stack([x["input_ids"] for x in items])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "loss_mask": torch.ones_like(ids)}

    with cpu_threads(threads):
        trainer.fit(data, collate, causal_lm_loss, resume=False, desc=f"pretrain {size_name}")
        model = trainer.unwrapped
        summary = evaluate_base(model, tokenizer, world, val, train)
    summary.update({"size": size_name, "params": sum(p.numel() for p in model.parameters()),
                    "build_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
                    "world": world.fingerprint,
                    "train_tokens": int(train.numel()), "seen_tokens": size.steps * size.batch_size * size.seq_len,
                    "threads": threads, "busy_cores_before": round(busy0, 2), "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)})
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "build_summary.json").write_text(json.dumps(summary, indent=2))
    shutil.rmtree(tmp / "pretrain" / "checkpoints", ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def ensure_testbed(size_name: str = "student", world: World | None = None, progress: bool = True,
                   root: Path | None = None) -> Path:
    """Path of the cached model of `size_name`, building it on first use.

    A file lock makes concurrent callers (parallel tests, several processes) wait for one
    build instead of each building their own copy.
    """
    import fcntl

    if size_name not in SIZES:
        raise ValueError(f"unknown testbed size '{size_name}'; choose one of {', '.join(SIZES)}")
    world = world or World(WorldConfig())
    dest = (root or cache_root()) / "testbed" / world.fingerprint / f"{size_name}-{_size_hash(world, SIZES[size_name])}"
    if (dest / "build_summary.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{size_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (dest / "build_summary.json").exists():
                return dest
            return build_model(size_name, world, progress=progress, root=root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_summary(path: Path) -> dict[str, Any]:
    """The measurements saved with a built model."""
    return json.loads((Path(path) / "build_summary.json").read_text())
