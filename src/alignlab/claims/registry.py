"""The claim rows, in table order: key → module holding `ROW` (imported only when run), and
which rows run on a real model (marked in the table; skipped by `--quick`)."""

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
    "akd_teacher": "alignlab.claims.rows.akd_teacher",
    "cal_dpo_smollm2": "alignlab.claims.rows.cal_dpo_smollm2",
    "sea_smollm2": "alignlab.claims.rows.sea_smollm2",
    "steering_smollm2": "alignlab.claims.rows.steering_smollm2",
}

BUILT_IN = "built-in world"  # the model mark of rows on the testbed's own models
REAL_MODEL: dict[str, str] = {key: "SmolLM2-135M" for key in ("cal_dpo_smollm2", "sea_smollm2", "steering_smollm2")}


def model_of(key: str) -> str:
    """The model a row runs on, as marked in the table: a real model's name or the built-in world."""
    return REAL_MODEL.get(key, BUILT_IN)


# rows on the built-in teacher: its first build takes ≈ 10 min on 2 quiet cores, too long for --quick
NEEDS_TEACHER = ("akd_teacher",)


# Rows run only when --rows names them: LoRA training of SmolLM2 on one CPU thread took 49 s per
# 4-pair step at load 6 (≈ 30 min per seed at the full preset), too long for the default full run.
ON_REQUEST = ("cal_dpo_smollm2",)


def default_keys(quick: bool) -> list[str]:
    """The rows run when none are named: all but the on-request ones; with --quick only the
    built-in-world ones (a real-model row takes minutes per seed even small, and quick must stay
    a few minutes) that need no teacher build."""
    return [k for k in ROWS if k not in ON_REQUEST and not (quick and (k in REAL_MODEL or k in NEEDS_TEACHER))]


def load_rows(keys: list[str] | None = None, quick: bool = False) -> list[ClaimRow]:
    """The rows named (`default_keys(quick)`, in table order, when None); an unknown key is a
    ValueError naming the known ones."""
    keys = default_keys(quick) if not keys else keys
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise ValueError(f"unknown claim row(s) {unknown}; choose from {', '.join(ROWS)}")
    return [importlib.import_module(ROWS[k]).ROW for k in keys]
