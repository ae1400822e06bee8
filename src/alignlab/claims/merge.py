"""Combine finished `alignlab claims` runs (e.g. rows run on different machines or at different
times) into one report: every row is re-judged from the per-seed numbers its run saved. The same
reading lets a run go on in its folder after an interruption (`earlier_rows`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignlab.claims.runner import RowOutcome, judge
from alignlab.errors import ConfigError, DataError


def load_run(path: Path) -> dict[str, Any]:
    """The content of a claims.json at `path` (a run's, finished or not); a DataError naming the
    file when it is not readable or not a claims run's."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable as claims JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError(f"{path}: no 'rows' list — not the claims.json of an `alignlab claims` run")
    return data


def read_run(folder: str | Path) -> dict[str, Any]:
    """DIR/claims.json of a finished run; a clear DataError naming the file when absent or broken."""
    path = Path(folder) / "claims.json"
    if not path.is_file():
        raise DataError(f"{path}: no claims.json here (give the --out folder of a finished `alignlab claims` run)")
    data = load_run(path)
    if data.get("partial"):
        raise DataError(f"{path}: a partial run (it was still going or was stopped); rerun or wait for it to finish")
    return data


def _number(v: Any) -> float:
    return float("nan") if v is None else float(v)  # claims.json writes NaN as null


def outcome_from_dict(d: dict[str, Any], where: str) -> RowOutcome:
    """A saved row re-judged from its per-seed numbers (the verdict rule of this version); a row
    that never measured (failed seed, model or data absent) keeps its saved verdict and reason."""
    from alignlab.claims.registry import load_rows
    from alignlab.claims.row import SeedResult

    try:
        row = load_rows([d["key"]])[0]
        per_seed = d["per_seed"]
        seeds = [int(s) for s in per_seed]
        results = [SeedResult({k: _number(v) for k, v in r["numbers"].items()},
                              {k: (list(xy[0]), list(xy[1])) for k, xy in (r.get("curves") or {}).items()},
                              r.get("note", "")) for r in per_seed.values()]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{where}: row {d.get('key', '?')!r} is not a saved claims row ({e})") from e
    if d.get("error") or not results:
        out = RowOutcome(row, seeds, results, verdict=d.get("verdict", ""), reason=d.get("reason", ""),
                         error=d.get("error", ""))
    else:
        out = judge(row, seeds, results)
    out.seconds = float(d.get("seconds") or 0.0)
    return out


def merge_runs(folders: list[str | Path]) -> tuple[list[RowOutcome], dict[str, Any]]:
    """The rows of every run, in the registry's table order (a row in several runs: the later
    folder wins), and facts naming each source run (command, wall time, load)."""
    from alignlab.claims.registry import ROWS

    if not folders:
        raise DataError("--merge needs at least one claims run folder")
    runs = [(str(f), read_run(f)) for f in folders]
    modes = {f: "quick" if data.get("quick") else "full" for f, data in runs}
    if len(set(modes.values())) > 1:
        raise DataError("cannot merge quick and full runs: " + ", ".join(f"{f} ({m})" for f, m in modes.items()))
    by_key: dict[str, RowOutcome] = {}
    origin: dict[str, int] = {}  # row key -> index of the run it is taken from
    for i, (f, data) in enumerate(runs):
        for d in data["rows"]:
            o = outcome_from_dict(d, str(Path(f) / "claims.json"))
            by_key[o.row.key], origin[o.row.key] = o, i
    outcomes = [by_key[k] for k in ROWS if k in by_key]
    sources = [{"folder": f, "command": data.get("command", ""), "seconds": data.get("seconds", 0.0),
                "load_average_start": data.get("load_average_start"), "load_average_end": data.get("load_average_end"),
                "rows": [d.get("key") for d in data["rows"] if origin.get(d.get("key")) == i],
                "replaced": [d.get("key") for d in data["rows"] if origin.get(d.get("key")) != i]}
               for i, (f, data) in enumerate(runs)]
    facts = {"seconds": round(sum(o.seconds for o in outcomes), 1), "quick": runs[0][1].get("quick", False),
             "seeds": sorted({s for o in outcomes for s in o.seeds}),
             "load_average_start": sources[0]["load_average_start"], "load_average_end": sources[-1]["load_average_end"],
             "cpu_count": runs[0][1].get("cpu_count"), "sources": sources,
             "models": {k: v for _, data in runs for k, v in (data.get("models") or {}).items()}}
    return outcomes, facts


def earlier_rows(folder: str | Path, quick: bool, seeds: list[int]) -> dict[str, RowOutcome]:
    """The rows an earlier (possibly interrupted) run in `folder` measured with these settings, to
    reuse instead of measuring again; {} when the folder holds no run. A run there with other
    settings is a ConfigError: the folder would silently change what it is."""
    path = Path(folder) / "claims.json"
    if not path.is_file():
        return {}
    try:
        data = load_run(path)
    except DataError as e:
        raise DataError(f"{e}; use another --out or remove the folder") from e
    mode = {True: "quick", False: "full"}
    if bool(data.get("quick")) != quick or list(data.get("seeds") or []) != list(seeds):
        raise ConfigError(f"{folder} holds a {mode[bool(data.get('quick'))]} claims run with seeds {data.get('seeds')}; "
                          f"this one is {mode[quick]} with seeds {list(seeds)}: use another --out (or remove that folder)")
    out = {}
    for d in data["rows"]:
        o = outcome_from_dict(d, str(path))
        if not o.error and len(o.seeds) == len(seeds):  # a failed or unmeasured row is measured again
            out[o.row.key] = o
    return out


def holds_measured_run(folder: str | Path) -> bool:
    """Whether `folder` has the claims.json of a run that measured rows (a merge's names its sources)."""
    path = Path(folder) / "claims.json"
    try:
        return path.is_file() and "sources" not in load_run(path)
    except DataError:
        return False
