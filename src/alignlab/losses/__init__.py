"""Pure loss functions (tensors in, tensors out), unit-tested against hand computation.

- `preference`: DPO, IPO, Cal-DPO, the reward-model ranking loss, implicit-reward metrics.
- `rl`: GAE, whitening, clipped PPO policy/value losses, KL penalties and controllers.
"""
