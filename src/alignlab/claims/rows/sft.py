"""Row 1 — OpenAssistant (Köpf et al., 2023): SFT on OASST-format conversation trees beats the
base model. Measured: the gold reward of sampled answers to held-out questions, base vs the
SFT model of the same seed (same prompts, same sampling seed), paired per seed."""

from __future__ import annotations

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common


def n_eval(quick: bool) -> int:
    return 16 if quick else 96


def measure(ctx: RowContext, seed: int) -> SeedResult:
    tuned = common.sft_model(ctx, seed)
    questions = common.chat_questions(n_eval(ctx.quick), seed)
    scores = {}
    for name, path in (("base", ctx.models["student"]), ("sft", tuned)):
        model, tok = common.load(path)
        texts = common.sample_texts(model, tok, common.render(tok, questions), 32, seed)
        scores[name] = common.mean(common.gold(texts))
    return SeedResult({"base_gold": scores["base"], "sft_gold": scores["sft"],
                       "sft_minus_base": scores["sft"] - scores["base"]})


ROW = ClaimRow(
    key="sft", paper="OpenAssistant Conversations (Köpf et al., 2023)",
    claim="SFT on OASST-format trees beats the base model on the gold reward",
    tests=(ClaimTest("sft_minus_base", "greater", "SFT − base gold reward"),),
    measure=measure, extra_keys=("base_gold", "sft_gold"),
    setup="student; top-1 threads exported from the world's OASST trees; SFT 120 steps × 16 (quick 10); "
          "96 held-out questions (quick 16), 32 new tokens, T = 1",
)
