"""Real data: embedding reward models on the HH-RLHF harmless pairs, single heads vs ensembles.

    .venv/bin/python benchmarks/erm_real_hh.py [--data ../shared/data/preference/hh-rlhf_harmless-base_test.jsonl.gz]
        [--encoders minilm real:smollm2] [--splits 5] [--out runs/erm-real-hh]

Each (prompt, chosen) and (prompt, rejected) is embedded once per encoder (MiniLM: mean
pooling, 384-d; SmolLM2-135M: last non-pad token of the last layer, 576-d; truncated from the
left to --max-length tokens), cached on disk. For each of `--splits` random 80/20 splits of the pairs:
a single MLP, 5 MLPs (seeds) by mean / min / mean − 1·std, a single GBDT and 5 bootstrap
GBDTs, all Bradley–Terry (GBDT: classification), scored by held-out pairwise accuracy.
Rows whose transcript has no final "Assistant:" turn are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from alignlab.data.jsonl import read_jsonl
from alignlab.embedding_rm.data import PairData
from alignlab.embedding_rm.embed import EmbedSettings, embed_pairs, load_encoder
from alignlab.embedding_rm.ensemble import compare_scorers
from alignlab.embedding_rm.gbdt import GBDTSettings
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.embedding_rm.store import rows_from_records
from alignlab.errors import DataError
from alignlab.eval.best_of_n import pairwise_accuracy
from alignlab.progress import console, print_table


def usable(records: list[dict]) -> tuple[list[dict], int]:
    """Records whose chosen and rejected transcripts both split into (prompt, final reply)."""
    keep, skipped = [], 0
    for i, rec in enumerate(records):
        try:
            rows_from_records([rec], f"row {i + 1}")
            keep.append(rec)
        except DataError:
            skipped += 1
    return keep, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parents[1]
    ap.add_argument("--data", default=str(here.parent / "shared/data/preference/hh-rlhf_harmless-base_test.jsonl.gz"))
    ap.add_argument("--encoders", nargs="+", default=["minilm", "real:smollm2"])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    ap.add_argument("--max-length", type=int, default=512, help="tokens per (prompt, response), cut from the left")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--out", default="runs/erm-real-hh")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = read_jsonl(args.data)
    if args.limit:
        records = records[: args.limit]
    records, skipped = usable(records)
    rows = rows_from_records(records, args.data)
    left, right, _ = rows.pairs
    console.print(f"{len(records)} pairs ({skipped} skipped: no final Assistant turn)")
    results: dict = {"pairs": len(records), "skipped": skipped, "encoders": {}}
    table = []
    for name in args.encoders:
        enc = load_encoder(name)
        t0 = time.time()
        emb = np.asarray(embed_pairs(enc, rows.prompts, rows.responses, EmbedSettings(max_length=args.max_length, batch_size=16),
                                     out / "cache", progress=True))
        embed_s = time.time() - t0
        per: dict[str, list[float]] = {}
        for split in range(args.splits):
            train, test = PairData(emb, left, right, np.ones(len(left), np.float32)).split(0.2, seed=split)
            for method, s in compare_scorers(train, emb, args.members, MLPSettings(seed=split, threads=args.threads),
                                                       GBDTSettings(seed=split, threads=args.threads)).items():
                per.setdefault(method, []).append(pairwise_accuracy(s[test.left], s[test.right], test.label))
            console.print(f"{name}: split {split} done")
        results["encoders"][name] = {"max_length": args.max_length, "dim": int(emb.shape[1]), "pooling": enc.pooling,
                                     "embed_seconds": round(embed_s, 1), "held_out_acc": per}
        for method, accs in per.items():
            table.append({"encoder": f"{name} ({enc.pooling}, {emb.shape[1]}-d)", "scorer": method,
                          "held-out pair acc": f"{np.mean(accs):.3f} ± {np.std(accs):.3f}"})
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print_table(f"HH-RLHF harmless: held-out pairwise accuracy ({args.splits} random 80/20 splits)", table)
    md = ["| encoder | scorer | held-out pairwise accuracy (mean ± std over splits) |", "|---|---|---|"]
    md += [f"| {r['encoder']} | {r['scorer']} | {r['held-out pair acc']} |" for r in table]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
