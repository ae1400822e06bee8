"""An embeddings folder: what `alignlab embed` writes (into its run folder) and `alignlab erm` reads.

    DIR/embeddings.npy   [n, D] float32 (open memory-mapped)
    DIR/meta.json        model, settings, source, n, dim, speed
    DIR/pairs.npz        left, right, label (when the input had chosen/rejected pairs)
    DIR/groups.npy       prompt id of each row (rows with the same prompt share an id)
    DIR/gold.npy         gold reward of each row (when the input had one)

Input rows (JSONL, .gz allowed): `{"prompt", "response"[, "gold", "group"]}` (one row each;
rows group by prompt text unless a "group" id is given),
`{"prompt", "chosen", "rejected"}`, the ranking export `{"prompt", "replies", "ranks"}` (every
better-ranked reply ≻ worse one), or HH-RLHF `{"chosen", "rejected"}` transcripts (the
prompt is the text up to the last "Assistant:" turn).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignlab.embedding_rm.data import PairData, check_embeddings
from alignlab.errors import DataError

HH_MARKER = "\n\nAssistant:"


@dataclass
class Rows:
    """Flattened (prompt, response) rows plus their pairs, prompt groups and gold rewards."""

    prompts: list
    responses: list[str]
    groups: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    gold: np.ndarray | None = None


def split_hh(text: str, where: str) -> tuple[str, str]:
    """(prompt, final assistant reply) of an HH-RLHF transcript."""
    cut = text.rfind(HH_MARKER)
    if cut < 0:
        raise DataError(f"{where}: no '{HH_MARKER.strip()}' turn to split the transcript at")
    return text[: cut + len(HH_MARKER)], text[cut + len(HH_MARKER) :]


def rows_from_records(records: list[dict], source: str = "data") -> Rows:
    """Turn JSONL records into embedding rows; a malformed record is an error naming its line."""
    prompts, responses, gold, left, right, label = [], [], [], [], [], []
    group_of: dict[str, int] = {}
    groups: list[int] = []
    has_gold = None

    def add(p, r: str, where: str, group=None) -> int:
        if not isinstance(r, str):
            raise DataError(f"{where}: response must be a string")
        key = json.dumps(p, sort_keys=True) if group is None else f"group:{json.dumps(group)}"
        groups.append(group_of.setdefault(key, len(group_of)))
        prompts.append(p)
        responses.append(r)
        return len(responses) - 1

    for i, rec in enumerate(records, 1):
        where = f"{source}:{i}"
        if "chosen" in rec and "rejected" in rec:
            if "prompt" in rec:
                pc, c, pr, r = rec["prompt"], rec["chosen"], rec["prompt"], rec["rejected"]
            else:
                (pc, c), (pr, r) = split_hh(str(rec["chosen"]), where), split_hh(str(rec["rejected"]), where)
            left.append(add(pc, c, where))
            right.append(add(pr, r, where))
            label.append(1.0)
        elif "prompt" in rec and "replies" in rec:  # the ranking export (`alignlab data export --mode rm`)
            replies, ranks = rec["replies"], rec.get("ranks") or list(range(len(rec["replies"])))
            if not isinstance(replies, list) or len(replies) < 2 or len(ranks) != len(replies):
                raise DataError(f"{where}: 'replies' needs 2+ replies and one rank each")
            from alignlab.losses.preference import ranking_pairs

            idx = [add(rec["prompt"], r, where) for r in replies]
            for a, b in ranking_pairs(ranks):
                left.append(idx[a])
                right.append(idx[b])
                label.append(1.0)
        elif "prompt" in rec and "response" in rec:
            add(rec["prompt"], rec["response"], where, rec.get("group"))
            g = rec.get("gold")
            if has_gold is None:
                has_gold = g is not None
            if (g is not None) != has_gold:
                raise DataError(f"{where}: 'gold' must be given on every row or on none")
            if g is not None:
                if not isinstance(g, (int, float)) or not np.isfinite(g):
                    raise DataError(f"{where}: 'gold' must be a finite number, got {g!r}")
                gold.append(float(g))
        else:
            raise DataError(f"{where}: needs 'prompt' + 'response', 'chosen' + 'rejected' or 'prompt' + 'replies' "
                            f"(has {sorted(rec)})")
    if not responses:
        raise DataError(f"{source}: no rows to embed")
    if left and has_gold:
        raise DataError(f"{source}: mix of pair rows and gold-scored rows; use one kind per file")
    pairs = (np.array(left), np.array(right), np.array(label, np.float32)) if left else None
    return Rows(prompts, responses, np.array(groups), pairs, np.array(gold) if has_gold else None)


STORE_FILES = ("meta.json", "embeddings.npy", "groups.npy", "pairs.npz", "gold.npy")


def write_store(out: str | Path, emb: np.ndarray, rows: Rows, meta: dict) -> Path:
    """Write the embeddings files into folder `out` (it may also hold a run's config and report).

    The files are built in a temp folder inside `out`, then renamed into place with meta.json
    last; store files of an earlier write that this one does not have are removed first.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".store.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if isinstance(emb, np.memmap) and emb.filename and emb.dtype == np.float32:
        shutil.copyfile(emb.filename, tmp / "embeddings.npy")  # stream the cached file, no RAM copy
    else:
        np.save(tmp / "embeddings.npy", np.asarray(emb, np.float32))
    np.save(tmp / "groups.npy", rows.groups)
    if rows.pairs is not None:
        np.savez(tmp / "pairs.npz", left=rows.pairs[0], right=rows.pairs[1], label=rows.pairs[2])
    if rows.gold is not None:
        np.save(tmp / "gold.npy", rows.gold)
    (tmp / "meta.json").write_text(json.dumps({**meta, "n": int(emb.shape[0]), "dim": int(emb.shape[1])}, indent=1))
    for name in STORE_FILES:  # meta.json of the earlier write, and files this one lacks
        if name == "meta.json" or not (tmp / name).exists():
            (out / name).unlink(missing_ok=True)
    for name in reversed(STORE_FILES):  # meta.json last
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    tmp.rmdir()
    return out


@dataclass
class Store:
    """A loaded embeddings folder."""

    path: Path
    emb: np.ndarray
    groups: np.ndarray
    meta: dict
    pairs: PairData | None = None
    gold: np.ndarray | None = None


def read_store(path: str | Path) -> Store:
    """Open an embeddings folder (embeddings memory-mapped) and check its parts agree."""
    path = Path(path)
    f = path / "embeddings.npy"
    if not f.is_file():
        raise DataError(f"{path}: not an embeddings folder (no embeddings.npy; create one with `alignlab embed`)")
    emb = check_embeddings(np.load(f, mmap_mode="r"), f"{f}")
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
    groups = np.load(path / "groups.npy") if (path / "groups.npy").exists() else np.arange(emb.shape[0])
    if groups.shape != (emb.shape[0],):
        raise DataError(f"{path}/groups.npy: {groups.shape} does not match {emb.shape[0]} embeddings")
    gold = np.load(path / "gold.npy") if (path / "gold.npy").exists() else None
    if gold is not None and gold.shape != (emb.shape[0],):
        raise DataError(f"{path}/gold.npy: {gold.shape} does not match {emb.shape[0]} embeddings")
    pairs = None
    if (path / "pairs.npz").exists():
        z = np.load(path / "pairs.npz")
        pairs = PairData(emb, z["left"], z["right"], z["label"])
    return Store(path, emb, groups, meta, pairs, gold)


def pool_matrix(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Reshape per-row values into [prompts, K] when every prompt has the same number K of rows."""
    order = np.argsort(groups, kind="stable")
    _, counts = np.unique(groups, return_counts=True)
    if len(set(counts.tolist())) != 1:
        raise DataError(f"best-of-N needs the same number of responses per prompt (got {sorted(set(counts.tolist()))[:5]})")
    return np.asarray(values)[order].reshape(len(counts), counts[0])
