"""Demo stage 2: reward model, then DPO vs Cal-DPO from the SFT model, judged by the gold reward.

The testbed's OASST-format trees are exported as ranking examples (split by tree). A reward
model is trained on them (held-out pairwise accuracy, Kendall τ, agreement with the gold
reward); DPO and Cal-DPO train from the SFT model on all ranked pairs; their sampled answers
to held-out questions are compared with the SFT model's under the gold reward (win rate,
several sampling seeds), and the implicit-reward curves show the two methods side by side.
"""

from __future__ import annotations

import json
import statistics

import torch

from alignlab.config import ModelSettings, TrainSettings
from alignlab.demo_stages import DemoContext, StageResult
from alignlab.eval.preference import spearman, win_rate
from alignlab.generation import sample
from alignlab.method_settings import PreferenceLossSettings
from alignlab.models import load_model
from alignlab.models.reward import RewardModel
from alignlab.plots import line_plot
from alignlab.recipes import prefs as preference
from alignlab.recipes import rm as reward
from alignlab.runs import read_metrics
from alignlab.scoring import score_completions
from alignlab.testbed.lexicon import sentiment_reward

METHODS = {"dpo": "DPO", "cal_dpo": "Cal-DPO"}


def _write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _answers(model, tok, prompts: list[list[dict[str, str]]], seed: int) -> list[str]:
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    return sample(model, tok, texts, max_new_tokens=32, temperature=1.0,
                  generator=torch.Generator().manual_seed(seed)).texts


def _sft_nll(sft, tok, prompts: list[list[dict[str, str]]], answers: list[str]) -> float:
    """Mean per-token NLL of answers under the SFT model: how far samples drift from it."""
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    keep = [i for i, a in enumerate(answers) if a.strip()]
    lp = score_completions(sft, tok, [texts[i] for i in keep], [answers[i] for i in keep], average=True)
    return -statistics.fmean(lp) if lp else float("nan")


def _reward_curves(runs: dict[str, object], path) -> object:
    series = {}
    for loss, run_dir in runs.items():
        recs = [r for r in read_metrics(run_dir / "metrics.jsonl") if "chosen_reward" in r]
        steps = [r["step"] for r in recs]
        series[f"{METHODS[loss]} chosen"] = (steps, [r["chosen_reward"] for r in recs])
        series[f"{METHODS[loss]} rejected"] = (steps, [r["rejected_reward"] for r in recs])
    return line_plot(series, path, title="Implicit rewards β·h during training: DPO vs Cal-DPO",
                     ylabel="implicit reward (β·h)", hline=0.0)


def run(ctx: DemoContext) -> StageResult:
    from alignlab.data.oasst import export_rm, read_trees, split_by_tree
    from alignlab.demo_stages.sft import chat_prompts

    stage_dir = ctx.out_dir / "prefs"
    stage_dir.mkdir(parents=True, exist_ok=True)
    start = str(ctx.artifacts.get("sft_model", ctx.base_model))
    trees_path = stage_dir / "trees.jsonl"
    _write(trees_path, ctx.world.dialogue_trees())
    trees, _ = read_trees(trees_path)
    train_rows, val_rows = split_by_tree(export_rm(trees), 0.15, seed=ctx.seed)
    q = ctx.quick
    if q:  # smoke-test sizes
        train_rows, val_rows = train_rows[:120], val_rows[:24]
    train_path, val_path = stage_dir / "rm_train.jsonl", stage_dir / "rm_val.jsonl"
    _write(train_path, train_rows)
    _write(val_path, val_rows)
    pairs_val_path = stage_dir / "pairs_val.jsonl"  # a smaller held-out set for the policies' implicit rewards
    _write(pairs_val_path, val_rows[:80])

    # 1. reward model on the ranking examples
    rm_cfg = reward.RewardConfig(
        model=ModelSettings(name_or_path=start),
        train=TrainSettings(lr=1e-3, batch_size=16, max_steps=6 if q else 50, log_every=5, save_every=0,
                            seed=ctx.seed, progress=not q),
        data=str(train_path), eval_data=str(val_path), max_length=128, output_dir=str(stage_dir / "rm"))
    rm_res = reward.run(rm_cfg)
    ctx.artifacts["rm_model"] = str(rm_res.model_dir)
    rm = RewardModel.load(rm_res.model_dir, max_length=128)
    val_prompts = [r["prompt"] for r in val_rows for _ in r["replies"]]
    val_replies = [t for r in val_rows for t in r["replies"]]
    rm_vs_gold = spearman(rm(val_prompts, val_replies), [sentiment_reward(t) for t in val_replies])

    # 2. DPO and Cal-DPO from the SFT model, same data, steps and β
    runs, results = {}, {}
    for loss in METHODS:
        cfg = preference.PrefsConfig(
            model=ModelSettings(name_or_path=start), preference=PreferenceLossSettings(loss=loss, beta=0.1),
            train=TrainSettings(lr=5e-4, batch_size=16, max_steps=6 if q else 40, log_every=2, save_every=0,
                                seed=ctx.seed, progress=not q),
            data=str(train_path), eval_data=str(pairs_val_path), max_length=128, max_prompt_length=64,
            reference="copy",  # runs shorter than an epoch: scoring only the batches used is cheaper
            output_dir=str(stage_dir / loss))
        results[loss] = preference.run(cfg)
        runs[loss] = results[loss].run_dir

    # 3. sampled answers to held-out questions, scored by the gold reward, several seeds
    prompts = chat_prompts(ctx, 12 if q else 64)
    seeds = [ctx.seed] if q else [ctx.seed + i for i in range(3)]
    gold: dict[str, list[float]] = {"sft": [], **{k: [] for k in METHODS}}
    nll: dict[str, list[float]] = {"sft": [], **{k: [] for k in METHODS}}
    wins: dict[str, list[float]] = {k: [] for k in METHODS}
    rm_agree: list[float] = []
    sft, tok = load_model(ModelSettings(name_or_path=start), trainable=False)
    policies = {k: load_model(ModelSettings(name_or_path=str(results[k].model_dir)), trainable=False)[0]
                for k in METHODS}
    for seed in seeds:
        base = _answers(sft, tok, prompts, seed)
        g_base = [sentiment_reward(t) for t in base]
        gold["sft"].append(statistics.fmean(g_base))
        nll["sft"].append(_sft_nll(sft, tok, prompts, base))
        s_base = rm(prompts, base)
        for loss in METHODS:
            ans = _answers(policies[loss], tok, prompts, seed)
            g = [sentiment_reward(t) for t in ans]
            gold[loss].append(statistics.fmean(g))
            nll[loss].append(_sft_nll(sft, tok, prompts, ans))
            wins[loss].append(win_rate(g, g_base))
            # does the learned RM order (policy answer, SFT answer) as the gold reward does?
            s_pol = rm(prompts, ans)
            keep = [i for i in range(len(g)) if g[i] != g_base[i]]
            rm_agree += [1.0 if (s_pol[i] > s_base[i]) == (g[i] > g_base[i]) else 0.0 for i in keep]

    def sd(xs: list[float]) -> float:
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    rows = [{"stage": "prefs", "table": "Reward model (held-out)", "method": "reward model",
             "pairwise_acc": rm_res.metrics.get("eval_pairwise_accuracy"),
             "kendall_tau": rm_res.metrics.get("eval_kendall_tau"), "rm_gold_spearman": rm_vs_gold,
             "rm_gold_agreement": statistics.fmean(rm_agree) if rm_agree else None},
            {"stage": "prefs", "table": "Policies: sampled answers to held-out questions", "method": "SFT (start)",
             "gold_reward": statistics.fmean(gold["sft"]),
             "sft_nll_of_samples": statistics.fmean(nll["sft"])}]
    for loss, label in METHODS.items():
        m = results[loss].metrics
        rows.append({"stage": "prefs", "table": "Policies: sampled answers to held-out questions", "method": label,
                     "gold_reward": statistics.fmean(gold[loss]),
                     "gold_sd_seeds": sd(gold[loss]), "win_rate_vs_sft": statistics.fmean(wins[loss]),
                     "sft_nll_of_samples": statistics.fmean(nll[loss]),
                     "pref_acc_heldout": m.get("eval_accuracy"), "chosen_reward": m.get("eval_chosen_reward"),
                     "rejected_reward": m.get("eval_rejected_reward"), "loss": m.get("loss")})
    fig = _reward_curves(runs, stage_dir / "dpo_vs_cal_dpo_rewards.png")
    dpo_c, cal_c = (results[k].metrics.get("chosen_reward") for k in METHODS)
    notes = [
        f"Reward model and DPO / Cal-DPO trained on {len(train_rows)} ranking examples "
        f"({sum(len(r['replies']) for r in train_rows)} replies) exported from {len(trees)} trees; "
        f"{len(val_rows)} held out by tree. Win rate = share of held-out questions where the method's "
        f"sampled answer has a higher gold reward than the SFT model's (ties ½), mean over {len(seeds)} sampling seed(s).",
        f"Observed at the end of training: DPO's chosen implicit reward {dpo_c:+.3f}, Cal-DPO's {cal_c:+.3f} "
        "(Cal-DPO paper: DPO's chosen reward falls below zero while Cal-DPO's stays positive).",
        "sft_nll_of_samples = mean per-token NLL of the sampled answers under the SFT model (drift: a gold-reward "
        "gain with a large NLL rise is reward hacking, e.g. strings of positive adjectives).",
    ]
    sft_gold, acc = statistics.fmean(gold["sft"]), rm_res.metrics.get("eval_pairwise_accuracy")
    headline = [{"method": "reward model", "measure": "held-out pairwise accuracy", "before": 0.5, "after": acc,
                 "note": "before = chance"}]
    headline += [{"method": label, "measure": "gold reward of answers", "before": sft_gold,
                  "after": statistics.fmean(gold[loss]), "note": f"SFT → {label}; win rate vs SFT "
                  f"{statistics.fmean(wins[loss]):.2f}"} for loss, label in METHODS.items()]
    verdict = ("; ".join(f"{h['method']} {h['before']:.2f} → {h['after']:.2f}" for h in headline[1:])
               + f" gold reward from the SFT model; the reward model ranks held-out pairs at {acc:.2f} accuracy.")
    return StageResult("prefs", rows=rows, figures=[fig, rm_res.run_dir / "loss_curve.png"], notes=notes,
                       verdict=verdict, headline=headline)
