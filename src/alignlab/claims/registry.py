"""The claim rows, in table order: key → module holding `ROW` (imported only when run)."""

from __future__ import annotations

import importlib

from alignlab.claims.row import ClaimRow

ROWS: dict[str, str] = {
    "sft": "alignlab.claims.rows.sft",
    "cal_dpo": "alignlab.claims.rows.cal_dpo",
    "elastic_reset": "alignlab.claims.rows.elastic_reset",
    "sea": "alignlab.claims.rows.sea",
    "steering": "alignlab.claims.rows.steering",
    "ensembles": "alignlab.claims.rows.ensembles",
    "psle": "alignlab.claims.rows.psle",
    "akd": "alignlab.claims.rows.akd",
}


def load_rows(keys: list[str] | None = None) -> list[ClaimRow]:
    """The rows named (all, in table order, when None); an unknown key is a ValueError naming the known ones."""
    keys = list(ROWS) if not keys else keys
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise ValueError(f"unknown claim row(s) {unknown}; choose from {', '.join(ROWS)}")
    return [importlib.import_module(ROWS[k]).ROW for k in keys]
