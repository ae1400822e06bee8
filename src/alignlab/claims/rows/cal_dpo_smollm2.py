"""Row 2 on a real model — Cal-DPO (Xiao et al., 2024) on SmolLM2-135M-Instruct with short LoRA
runs: calibrating the implicit reward keeps the chosen response's reward positive while DPO's
falls.

Per seed: a seeded draw of HH-RLHF harmless-base pairs (public test file) for training and a
disjoint one held out; DPO and Cal-DPO each train a fresh LoRA adapter on the same pairs (same
steps, β, data order; the reference is the base with the adapter off). Measured: the held-out
chosen implicit reward β·h_w at the end. The gold-at-equal-drift half of the testbed row has no
gold reward here and is left out."""

from __future__ import annotations

import random
from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common, real_smollm2

HH = "preference/hh-rlhf_harmless-base_test.jsonl.gz"
METHODS = ("dpo", "cal_dpo")
BETA, LR, RANK = 0.1, 5e-4, 8


@dataclass(frozen=True)
class Sizes:
    steps: int
    batch: int
    n_eval: int


SIZES = {True: Sizes(steps=2, batch=4, n_eval=8), False: Sizes(steps=20, batch=4, n_eval=32)}


def split_pairs(rows: list[dict], n_train: int, n_eval: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded, disjoint (train, held-out) draw of the pairs."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[:n_train]], [rows[i] for i in order[n_train: n_train + n_eval]]


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.config import LoraSettings, ModelSettings, TrainSettings
    from alignlab.data.jsonl import read_jsonl
    from alignlab.method_settings import PreferenceLossSettings
    from alignlab.recipes import prefs
    from alignlab.resolve import model_path

    size = SIZES[ctx.quick]
    files = real_smollm2.require(ctx, HH)
    root = ctx.seed_dir(seed)
    train, held = split_pairs(read_jsonl(files[HH]), size.steps * size.batch, size.n_eval, seed)
    train_path, eval_path = common.write_jsonl(root / "train.jsonl", train), common.write_jsonl(root / "eval.jsonl", held)
    numbers = {}
    for loss in METHODS:
        cfg = prefs.PrefsConfig(
            model=ModelSettings(name_or_path=model_path("real:smollm2"), lora=LoraSettings(enabled=True, r=RANK, alpha=2 * RANK)),
            preference=PreferenceLossSettings(loss=loss, beta=BETA),
            train=TrainSettings(lr=LR, batch_size=size.batch, max_steps=size.steps, log_every=4, save_every=0,
                                seed=seed, progress=False),
            data=str(train_path), eval_data=str(eval_path), max_length=256, max_prompt_length=192,
            reference="adapter", output_dir=str(root / loss))
        m = prefs.run(cfg).metrics
        numbers[f"{loss}_chosen_reward"] = float(m["eval_chosen_reward"])
        numbers[f"{loss}_rejected_reward"] = float(m["eval_rejected_reward"])
        numbers[f"{loss}_accuracy"] = float(m["eval_accuracy"])
    numbers["cal_minus_dpo_chosen_reward"] = numbers["cal_dpo_chosen_reward"] - numbers["dpo_chosen_reward"]
    return SeedResult(numbers)


ROW = ClaimRow(
    key="cal_dpo_smollm2", paper=f"Cal-DPO (Xiao et al., NeurIPS 2024) — {real_smollm2.MODEL}, short LoRA runs",
    claim=f"Cal-DPO's chosen reward stays positive while DPO's falls, on {real_smollm2.MODEL} (LoRA, HH-RLHF)",
    tests=(ClaimTest("cal_dpo_chosen_reward", "greater", "Cal-DPO held-out chosen reward β·h_w"),
           ClaimTest("dpo_chosen_reward", "less", "DPO held-out chosen reward β·h_w")),
    measure=measure,
    extra_keys=("cal_minus_dpo_chosen_reward", "dpo_rejected_reward", "cal_dpo_rejected_reward", "dpo_accuracy",
                "cal_dpo_accuracy"),
    setup=f"{real_smollm2.MODEL}-Instruct (real:smollm2), LoRA r = {RANK} on q/k/v/o, reference = base with the "
          f"adapter off; seeded draws of HH-RLHF harmless-base pairs: 20 steps × 4 pairs (quick 2 × 4), 32 held out "
          f"(quick 8), max 256 tokens; β = {BETA}, lr {LR:g}; no gold reward here, so no equal-drift test",
)
