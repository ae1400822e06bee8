"""`alignlab embed`: embed (prompt, response) rows once with a frozen model into an embeddings folder.

    alignlab embed model=minilm data=hh.jsonl encoder.max_length=128 --out runs/emb-hh
    alignlab embed -c examples/embed.yaml --out runs/emb

The run folder is the embeddings folder `alignlab erm` reads (`embeddings=RUN`): beside
config.yaml, metrics.jsonl and report.html it holds embeddings.npy, meta.json, groups.npy and,
when the input has them, pairs.npz and gold.npy. Vectors are cached by model + data + settings
under `cache_dir` (default <alignlab cache>/embeddings), so embedding the same rows again is a
cache hit and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alignlab.config import Range, bounded
from alignlab.data.tables import read_rows
from alignlab.method_settings import EmbedSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

# Ranges of the encoder settings, checked where this recipe loads them (EmbedSettings lives beside the encoder).
ENCODER_RANGES = {"max_length": Range(ge=1), "batch_size": Range(ge=1), "chunk_size": Range(ge=1)}


@dataclass
class EmbedConfig:
    """Embed (prompt, response) rows once with a frozen model (cached); the run folder is the embeddings folder."""

    model: str = ""  # `minilm` (packaged sentence encoder), a model folder, a hub id, or a name alignlab resolves
    data: str = ""  # JSONL: {prompt, response[, gold, group]}, {[prompt,] chosen, rejected} or HH-RLHF pairs
    encoder: EmbedSettings = field(default_factory=EmbedSettings)  # pooling, layer, template, max_length, ...
    limit: int = bounded(0, ge=0)  # embed only the first N records (0 = all)
    cache_dir: str = ""  # embedding cache (default <alignlab cache>/embeddings)
    progress: bool = True
    output_dir: str = ""

    def check(self, where: str) -> None:
        """The encoder's numeric settings are in range."""
        for name, rng in ENCODER_RANGES.items():
            rng.check(getattr(self.encoder, name), f"{where}.encoder.{name}")


def default_cache_dir() -> Path:
    """Where embeddings are cached: <alignlab cache>/embeddings."""
    from alignlab.paths import cache_root

    return cache_root() / "embeddings"


def run(cfg: EmbedConfig) -> RunResult:
    """Embed cfg.data with cfg.model into the run folder; metrics say how many rows, how fast, cached or not."""
    from alignlab.embedding_rm.embed import cached_rows, embed_pairs, load_encoder
    from alignlab.embedding_rm.store import rows_from_records, write_store
    from alignlab.resolve import require

    require(cfg.model, "model", "an encoder ('minilm', a model folder, a hub id or a name alignlab.resolve knows)")
    require(cfg.data, "data", "a JSONL file of (prompt, response) rows or chosen/rejected pairs")
    records = [row for _, row in read_rows(cfg.data, what="data file")]
    if cfg.limit > 0:
        records = records[: cfg.limit]
    rows = rows_from_records(records, cfg.data)
    enc = load_encoder(cfg.model, cfg.encoder.pooling)
    run_dir = RunDir(cfg.output_dir or default_run_dir("embed"))
    run_dir.save_config(cfg)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    from_cache = cached_rows(enc, rows.prompts, rows.responses, cfg.encoder, cache)
    t0 = time.time()
    emb = embed_pairs(enc, rows.prompts, rows.responses, cfg.encoder, cache, cfg.progress)
    dt = time.time() - t0
    n = len(rows.responses)
    meta = {"model": cfg.model, "source": str(cfg.data), "pooling": enc.pooling, "settings": asdict(cfg.encoder),
            "seconds": round(dt, 2), "rows_per_s": round(n / max(dt, 1e-9), 1)}
    write_store(run_dir.path, emb, rows, meta)
    metrics = {"rows": n, "dim": int(emb.shape[1]), "prompts": int(len(set(rows.groups.tolist()))),
               "pairs": 0 if rows.pairs is None else len(rows.pairs[0]), "gold": rows.gold is not None,
               "pooling": enc.pooling, "seconds": meta["seconds"], "rows_per_s": meta["rows_per_s"],
               "cache_hit": from_cache == n, "cached_rows": from_cache}
    run_dir.log(metrics)
    _report(run_dir.path, cfg, metrics)
    return RunResult(run_dir.path, metrics)


def _report(path: Path, cfg: EmbedConfig, metrics: dict) -> None:
    from alignlab.report import write_report

    what = {"model": cfg.model, "data": cfg.data, "layer": cfg.encoder.layer, "template": cfg.encoder.template,
            "max_length": cfg.encoder.max_length, **metrics}
    write_report(path, title=f"Embeddings: {cfg.model}", tables={"Embedded": [what]}, curve_keys=(),
                 notes=[f"This folder is an embeddings folder: `alignlab erm mode=train embeddings={path}`."])


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "embed", "Embed (prompt, response) rows once with a frozen model (cached)", EmbedConfig, run)
