"""Row 2 — Cal-DPO (Xiao et al., 2024): calibrating the implicit reward keeps the chosen
response's reward positive while DPO's falls, and Cal-DPO is at least as good as DPO.

Per seed, from the SFT model: DPO and Cal-DPO train on the same ranked pairs (same steps, β,
data order). Measured: the held-out chosen implicit reward β·h_w at the end of training, and a
gold-reward-vs-drift curve of each method (checkpoints along training; drift = per-token NLL of
the samples under the SFT model). "At equal drift" = both curves' frontier (best gold reward
with drift ≤ d) at d* = the smaller of the two methods' largest drift."""

from __future__ import annotations

from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common
from alignlab.claims.stats import frontier_at

METHODS = {"dpo": "DPO", "cal_dpo": "Cal-DPO"}


@dataclass(frozen=True)
class Sizes:
    steps: int
    save_every: int
    n_eval: int
    max_train_rows: int  # 0: all


SIZES = {True: Sizes(steps=6, save_every=3, n_eval=12, max_train_rows=120),
         False: Sizes(steps=80, save_every=20, n_eval=64, max_train_rows=0)}


def _data(root, seed: int, max_rows: int):
    from alignlab.data.oasst import export_rm, read_trees, split_by_tree

    trees, _ = read_trees(common.write_jsonl(root / "trees.jsonl", common.world().dialogue_trees()))
    train, val = split_by_tree(export_rm(trees), 0.15, seed=seed)
    if max_rows:
        train = train[:max_rows]
    return common.write_jsonl(root / "pairs_train.jsonl", train), common.write_jsonl(root / "pairs_val.jsonl", val[:80])


def _curve(start: str, run_dir, final_dir, prompts: list[str], seed: int) -> list[tuple[float, float]]:
    """(drift, gold) at the start, at each checkpoint before the end, and at the final model."""
    from alignlab.runs import RunDir

    sft, tok = common.load(start)
    models = [lambda: (sft, tok)]
    models += [lambda c=c: common.load_checkpoint(start, c) for c in RunDir(run_dir).checkpoints()[:-1]]
    models.append(lambda: common.load(final_dir))
    points = []
    for get in models:
        model, _ = get()
        texts = common.sample_texts(model, tok, prompts, 32, seed)
        points.append((common.nll_per_token(sft, tok, prompts, texts), common.mean(common.gold(texts))))
    return points


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.method_settings import PreferenceLossSettings
    from alignlab.recipes import prefs

    size = SIZES[ctx.quick]
    root = ctx.seed_dir(seed)
    start = common.sft_model(ctx, seed)
    train, val = _data(root, seed, size.max_train_rows)
    _, tok = common.load(start)
    prompts = common.render(tok, common.chat_questions(size.n_eval, seed))
    numbers, curves, points = {}, {}, {}
    for loss, label in METHODS.items():
        cfg = prefs.PrefsConfig(
            model=ModelSettings(name_or_path=start), preference=PreferenceLossSettings(loss=loss, beta=0.1),
            train=TrainSettings(lr=5e-4, batch_size=16, max_steps=size.steps, log_every=2, save_every=size.save_every,
                                keep_checkpoints=0, seed=seed, progress=False),
            data=str(train), eval_data=str(val), max_length=128, max_prompt_length=64, reference="copy",
            output_dir=str(root / loss))
        res = prefs.run(cfg)
        numbers[f"{loss}_chosen_reward"] = float(res.metrics["eval_chosen_reward"])
        numbers[f"{loss}_rejected_reward"] = float(res.metrics["eval_rejected_reward"])
        points[loss] = _curve(start, res.run_dir, res.model_dir, prompts, seed)
        numbers[f"{loss}_final_gold"], numbers[f"{loss}_final_drift"] = points[loss][-1][1], points[loss][-1][0]
        curves[f"{label} seed {seed}"] = ([p[0] for p in points[loss]], [p[1] for p in points[loss]])
    d_star = min(max(p[0] for p in points[k]) for k in METHODS)
    numbers["equal_drift_nll"] = d_star
    for k in METHODS:
        numbers[f"{k}_gold_at_equal_drift"] = frontier_at(points[k], d_star)
    numbers["cal_minus_dpo_gold_at_equal_drift"] = (numbers["cal_dpo_gold_at_equal_drift"]
                                                    - numbers["dpo_gold_at_equal_drift"])
    numbers["sft_gold"], numbers["sft_drift"] = points["dpo"][0][1], points["dpo"][0][0]
    return SeedResult(numbers, curves)


ROW = ClaimRow(
    key="cal_dpo", paper="Cal-DPO (Xiao et al., NeurIPS 2024)",
    claim="Cal-DPO's chosen reward stays positive while DPO's falls; Cal-DPO ≥ DPO on gold at equal drift",
    tests=(ClaimTest("cal_dpo_chosen_reward", "greater", "Cal-DPO held-out chosen reward β·h_w"),
           ClaimTest("dpo_chosen_reward", "less", "DPO held-out chosen reward β·h_w"),
           ClaimTest("cal_minus_dpo_gold_at_equal_drift", "greater", "Cal-DPO − DPO gold at equal drift")),
    measure=measure, curve_axes=("drift: NLL/token of samples under SFT", "gold reward"),
    extra_keys=("sft_gold", "dpo_final_gold", "cal_dpo_final_gold", "dpo_final_drift", "cal_dpo_final_drift",
                "equal_drift_nll"),
    setup="from each seed's SFT model; ranked pairs of the world's trees (15 % of trees held out); β = 0.1, "
          "lr 5e-4, 80 steps × 16 pairs (quick 6), checkpoints every 20; 64 held-out questions (quick 12)",
)
