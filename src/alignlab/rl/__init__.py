"""RLHF building blocks: rollouts, a policy with a value head, rewards, Elastic Reset.

The recipe that ties them together is `alignlab.recipes.ppo`; the pure math is in
`alignlab.losses.rl`, the drift metrics in `alignlab.eval.drift`.
"""

from alignlab.rl.elastic_reset import ElasticReset, ElasticResetSettings
from alignlab.rl.policy import PolicyWithValue
from alignlab.rl.rewards import RewardFn, RewardProcessor, check_finite_rewards
from alignlab.rl.rollout import Rollout, collect_rollout

__all__ = [
    "ElasticReset", "ElasticResetSettings", "PolicyWithValue", "RewardFn", "RewardProcessor",
    "Rollout", "check_finite_rewards", "collect_rollout",
]
