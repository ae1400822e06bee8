"""Elastic Reset arithmetic: EMA updates, reset after n updates, switches, state round trip."""

from __future__ import annotations

import pytest
import torch

from alignlab.errors import ConfigError
from alignlab.rl.elastic_reset import ElasticReset, ElasticResetSettings


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        self.value_head = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.value_head.weight.fill_(3.0)


def _er(model, **kw):
    s = ElasticResetSettings(enabled=True, **{"decay": 0.9, "reset_every": 3, **kw})
    return ElasticReset(model.named_parameters(), s)


def test_after_n_updates_online_equals_ema_and_ema_equals_theta0():
    m = Tiny()
    theta0 = m.w.detach().clone()
    er = _er(m)
    thetas = [torch.tensor([2.0, 0.0]), torch.tensor([4.0, 1.0]), torch.tensor([-2.0, 6.0])]
    resets = []
    for t in thetas:
        with torch.no_grad():
            m.w.copy_(t)
        resets.append(er.tick("step"))
    assert resets == [False, False, True]
    # θ̄3 = 0.9³θ0 + 0.9²·0.1 θ1 + 0.9·0.1 θ2 + 0.1 θ3
    expected = 0.729 * theta0 + 0.081 * thetas[0] + 0.09 * thetas[1] + 0.1 * thetas[2]
    assert torch.allclose(m.w.detach(), expected, atol=1e-6)
    assert torch.allclose(er.ema["w"], theta0)
    assert er.resets == 1 and er.updates == 3


def test_ema_only_updates_on_its_unit():
    m = Tiny()
    er = _er(m, ema_update="epoch")
    with torch.no_grad():
        m.w.add_(1.0)
    assert er.tick("step") is False and er.updates == 0
    assert torch.allclose(er.ema["w"], torch.tensor([1.0, 2.0]))
    er.tick("epoch")
    assert er.updates == 1
    assert torch.allclose(er.ema["w"], torch.tensor([1.1, 2.1]))


@pytest.mark.parametrize("mode,expected", [("keep", 7.0), ("initial", 3.0), ("ema", 0.9 * 3.0 + 0.1 * 7.0)])
def test_value_head_reset_modes(mode, expected):
    m = Tiny()
    er = _er(m, reset_every=1, reset_value_head=mode)
    with torch.no_grad():
        m.value_head.weight.fill_(7.0)
    assert er.tick("step")
    assert float(m.value_head.weight.detach()) == pytest.approx(expected)
    assert float(er.ema["value_head.weight"]) == pytest.approx(3.0)


def test_state_round_trip_resumes_the_same_arithmetic():
    a, b = Tiny(), Tiny()
    er_a, er_b = _er(a), _er(b)
    with torch.no_grad():
        a.w.copy_(torch.tensor([5.0, 5.0]))
    er_a.tick("step")
    er_b.load_state_dict(er_a.state_dict())
    with torch.no_grad():
        b.w.copy_(a.w)
    for m, er in ((a, er_a), (b, er_b)):
        with torch.no_grad():
            m.w.mul_(2.0)
        er.tick("step")
        er.tick("step")  # third update: reset
    assert er_b.resets == 1 and torch.equal(a.w, b.w)


def test_bad_settings_name_the_field():
    from alignlab.config import load_config
    from alignlab.recipes.ppo import PPOConfig

    with pytest.raises(ConfigError, match="elastic_reset.ema_update"):
        load_config(PPOConfig, None, ["elastic_reset.ema_update=minute"])
    with pytest.raises(ConfigError, match="elastic_reset.decay"):
        ElasticResetSettings(decay=1.0).validate()
    with pytest.raises(ConfigError, match="elastic_reset.kl_anchor"):
        load_config(PPOConfig, None, ["elastic_reset.kl_anchor=ref"])
