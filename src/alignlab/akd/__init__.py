"""AKD — adversarial knowledge distillation for code (SPEC §7): the parts the recipe is made of.

curriculum (pass rates, buckets, harder-first draws), proposer (the skill pool that writes fresh
exercises with tests), data (attempts → teacher ≻ student pairs and distillation examples: the
round's buffer), loss (DPO-family + λ·distillation, exact round means), report (rows, summary,
report.html). The recipe itself is `alignlab.recipes.akd` (`alignlab akd`).
"""
