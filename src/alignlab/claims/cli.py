"""The `alignlab claims` command: parse, run the chosen rows over the seeds, write and print."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from alignlab.claims.registry import ON_REQUEST, REAL_MODEL, ROWS
from alignlab.errors import ConfigError


def run_claims(out: str | Path, quick: bool = False, seeds: int = 3, rows: list[str] | None = None,
               command: str = "", data: str | Path | None = None, rerun: bool = False) -> dict[str, Path]:
    """Run the rows (all by default; --quick leaves out the real-model rows) over seeds 0 … seeds−1,
    write DIR/CLAIMS.md, claims.json and plots, print the table; returns the written files.
    `data`: the folder of public data files the real-model rows read (None: their default).
    Rows an earlier run in DIR measured with the same settings are taken, not measured again
    (an interrupted hour goes on where it stopped), unless `rerun`."""
    from alignlab.claims.merge import earlier_rows
    from alignlab.claims.registry import load_rows
    from alignlab.claims.report import table_rows, write_all
    from alignlab.claims.runner import run_all
    from alignlab.progress import fmt_duration, print_table, say

    chosen = load_rows(rows, quick)
    out = Path(out)
    command = command or f"alignlab claims --out {out}"
    earlier = earlier_rows(out, quick, list(range(seeds)))  # also refuses a folder holding other settings
    keys = {r.key for r in chosen}
    kept = [earlier[k] for k in ROWS if k in earlier and k not in keys]  # rows not asked for stay in the files

    def with_kept(outcomes: list, facts: dict) -> tuple[list, dict]:
        """The rows asked for, in their order, then the folder's other rows."""
        return [*outcomes, *kept], {**facts, "reused": [*facts.get("reused", []), *(o.row.key for o in kept)]}

    # after each row the files hold what is done so far (an interrupted hour keeps its rows)
    outcomes, facts = run_all(chosen, out, list(range(seeds)), quick,
                              on_row=lambda done, f: write_all(*with_kept(done, {**f, "partial": True}), command, out),
                              shared={"data_root": str(data)} if data else None, done={} if rerun else earlier)
    outcomes, facts = with_kept(outcomes, facts)
    written = write_all(outcomes, facts, command, out)
    print_table("alignlab claims — seed papers' headline claims on the built-in world", table_rows(outcomes))
    say(f"claims: all done in {fmt_duration(facts['seconds'])} (load average {facts['load_average_start']} → "
        f"{facts['load_average_end']}); {written['markdown']}, {written['json']}, report: {written['html']}")
    return written


def merge_claims(folders: list[str], out: str | Path, command: str = "") -> dict[str, Path]:
    """Combine finished runs' rows into one report under `out` (no row is measured again)."""
    from alignlab.claims.merge import holds_measured_run, merge_runs
    from alignlab.claims.report import table_rows, write_all
    from alignlab.progress import print_table, say

    out = Path(out)
    if holds_measured_run(out):  # checked before reading the sources
        raise ConfigError(f"{out} holds a measured claims run (not a merge); merging into it would replace its "
                          "results: give another --out")
    outcomes, facts = merge_runs(folders)
    written = write_all(outcomes, facts, command or f"alignlab claims --merge {' '.join(folders)} --out {out}", out)
    print_table("alignlab claims — merged runs", table_rows(outcomes))
    say(f"claims: {len(outcomes)} row(s) from {len(folders)} run(s) → {written['markdown']}, {written['json']}, report: {written['html']}")
    return written


def _rows_arg(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    return keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="Re-measure each seed paper's headline claim (≥ 3 seeds, 95-percent t intervals)",
                       description="Re-measure each seed paper's headline claim on the built-in test world with "
                                   "several seeds and 95-percent t intervals; write DIR/CLAIMS.md, DIR/claims.json, DIR/report.html and "
                                   "DIR/plots/, and print paper | model | claim | measurement | verdict. Rows: "
                                   + ", ".join(ROWS) + f". Rows on a real model ({', '.join(REAL_MODEL)}) run "
                                   "when named or in a full run (" + ", ".join(ON_REQUEST) + " only when named), never by default "
                                   "with --quick; without the model or data they are 'untestable here'.")
    p.add_argument("--quick", action="store_true", help="small settings (minutes; a smoke test, not evidence)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row (≥ 2 for an interval; default 3)")
    p.add_argument("--out", help="output folder (default runs/claims, or runs/claims-quick with --quick)")
    p.add_argument("--rows", type=_rows_arg, help="comma-separated rows to run (default: all; with --quick all "
                                                  "but the real-model rows), e.g. sft,cal_dpo")
    p.add_argument("--merge", nargs="+", metavar="RUN_DIR",
                   help="measure nothing: combine the claims.json of finished runs (e.g. rows run on other machines) "
                        "into one CLAIMS.md under --out, each row re-judged from its per-seed numbers")
    p.add_argument("--rerun", action="store_true", help="measure every chosen row again, even those an earlier run "
                                                        "in --out measured with the same settings (default: keep them)")
    p.add_argument("--data", help="folder of the public data files the real-model rows read (TruthfulQA, BBQ, "
                                  "tinyshakespeare; default $ALIGNLAB_DATA, else ../shared/data)")

    def handler(a: argparse.Namespace) -> int:
        if a.seeds < 1:
            p.error("--seeds must be ≥ 1")
        out = a.out or ("runs/claims-quick" if a.quick else "runs/claims")
        command = shlex.join(["alignlab", *getattr(a, "cli_argv", sys.argv[1:])])
        if a.merge:
            if a.rows or a.quick or a.rerun:
                p.error("--merge combines finished runs; it takes no --rows, --quick or --rerun")
            merge_claims(a.merge, out, command=command)
            return 0
        try:
            run_claims(out, a.quick, a.seeds, a.rows, command=command, data=a.data, rerun=a.rerun)
        except KeyboardInterrupt:  # the rows finished so far are in DIR/claims.json (partial)
            print(f"alignlab: interrupted; the rows finished so far are in {Path(out) / 'claims.json'}. To go on "
                  f"where it stopped: {command}", file=sys.stderr)
            return 130
        return 0

    p.set_defaults(func=handler)
