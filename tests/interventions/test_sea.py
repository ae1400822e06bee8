"""SEA math against hand computation, Φ-SEA feature maps, editor save/load and hooks."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.interventions import sea
from alignlab.interventions.hooks import Site


def _acts(n=24, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    return h, h + 0.3 * torch.randn(n, d, generator=g), -h + 0.3 * torch.randn(n, d, generator=g)


def test_energy_rank_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
    assert sea.energy_rank(s, 0.6) == 1  # 9/14 = 0.643
    assert sea.energy_rank(s, 0.65) == 2  # 13/14 = 0.929
    assert sea.energy_rank(s, 0.93) == 3
    assert sea.energy_rank(s, 1.0, dim=5) == 5  # K = 1 keeps every direction


def test_cross_covariance_by_hand():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    hp = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    # uncentred: (h0 hp0ᵀ + h1 hp1ᵀ) / 2 = ([[3,1],[0,0]] + [[0,0],[2,2]]) / 2
    assert torch.allclose(sea.cross_covariance(h, hp, center=False), torch.tensor([[1.5, 0.5], [1.0, 1.0]], dtype=torch.float64))
    # centred: h - mean = ±[0.5, -1], hp - mean = ±[1, 0] -> 2 · ([0.5,-1]ᵀ[1,0]) / 2
    assert torch.allclose(sea.cross_covariance(h, hp, center=True), torch.tensor([[0.5, 0.0], [-1.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("K", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("center", [True, False])
def test_projections_symmetric_idempotent_of_chosen_rank(K, center):
    h, hp, hn = _acts()
    p_pos, p_neg, kp, kn = sea.projections(h, hp, hn, K, K, center)
    d = h.shape[1]
    for p, rank in ((p_pos, kp), (p_neg, d - kn)):
        assert torch.allclose(p, p.T, atol=1e-10)
        assert torch.allclose(p @ p, p, atol=1e-10)
        assert round(float(torch.trace(p))) == rank
        assert int(torch.linalg.matrix_rank(p)) == rank
    _, s, _ = torch.linalg.svd(sea.cross_covariance(h, hp, center))
    assert kp == sea.energy_rank(s, K) and 0 < kp <= d


def test_negative_projection_removes_the_dominant_negative_direction():
    g = torch.Generator().manual_seed(1)
    u = torch.zeros(8)
    u[3] = 1.0
    h = torch.randn(40, 8, generator=g) * 0.1 + torch.randn(40, 1, generator=g) * 5 * u
    hn = h + 0.01 * torch.randn(40, 8, generator=g)
    _, p_neg, _, kn = sea.projections(h, h, hn, 0.9, 0.9)
    assert kn == 1
    assert float((p_neg.float() @ u).norm()) < 0.05  # u is (almost) removed
    v = torch.zeros(8)
    v[0] = 1.0
    assert float((p_neg.float() @ v).norm()) > 0.95  # other directions kept


def test_sea_edit_by_hand_and_norm_preserved():
    m = torch.diag(torch.tensor([1.0, 0.0]))
    assert torch.allclose(sea.sea_edit(torch.tensor([[3.0, 4.0]]), m), torch.tensor([[5.0, 0.0]]))
    h = torch.randn(5, 7, 6)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    m = q[:, :3] @ q[:, :3].T
    assert torch.allclose(sea.sea_edit(h, m).norm(dim=-1), h.norm(dim=-1), atol=1e-5)
    mu = torch.randn(6)
    e = sea.sea_edit(h, m, mu)
    assert torch.allclose((e - mu).norm(dim=-1), (h - mu).norm(dim=-1), atol=1e-5)


def test_edit_strength_by_hand():
    h = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    m = torch.diag(torch.tensor([1.0, 0.0]))
    # [3,4] -> [5,0]: ‖[2,-4]‖/5 = √20/5; [0,2] -> M h = 0, clamped norm: h' = 0, moved ‖h‖/‖h‖ = 1
    assert sea.edit_strength(h, lambda x: sea.sea_edit(x, m)) == pytest.approx((math.sqrt(20) / 5 + 1) / 2)
    assert sea.edit_strength(h, lambda x: sea.sea_edit(x, torch.eye(2))) == pytest.approx(0.0, abs=1e-7)


def test_a_shared_mean_direction_makes_the_uncentred_edit_an_identity_and_says_so():
    """Activations = a large common offset + small answer-dependent parts: the uncentred Ω± both
    put ≥ K of their energy on the offset, k⁺ = k⁻ = 1, M ≈ I; centred, the edit acts."""
    g = torch.Generator().manual_seed(2)
    offset = torch.full((16,), 3.0)
    h = offset + 0.1 * torch.randn(64, 16, generator=g)
    hp, hn = h + 0.1 * torch.randn(64, 16, generator=g), h + 0.1 * torch.randn(64, 16, generator=g)
    site = Site("resid", 0)
    acts = {"neutral": {site: h}, "positive": {site: hp}, "negative": {site: hn}}
    flat = sea.fit_from_activations(acts, 0.9, 0.9)
    e = flat.edits[site]
    assert (e.k_pos, e.k_neg) == (1, 1) and e.strength < sea.WEAK_EDIT
    assert flat.weak_sites() == [(site, e.strength)] and flat.strength == e.strength
    centred = sea.fit_from_activations(acts, 0.9, 0.9, center=True)
    assert centred.edits[site].strength > sea.WEAK_EDIT and centred.weak_sites() == []


def test_strength_is_saved_with_the_editor(tmp_path):
    h, hp, hn = _acts()
    site = Site("resid", 1)
    editor = sea.fit_from_activations({"neutral": {site: h}, "positive": {site: hp}, "negative": {site: hn}}, 0.9, 0.9)
    assert editor.edits[site].strength == pytest.approx(sea.edit_strength(h, editor.edit_fn(site)))
    again = sea.SEAEditor.load(editor.save(tmp_path / "ed"))
    assert again.edits[site].strength == pytest.approx(editor.edits[site].strength)


@pytest.mark.parametrize("name", ["tanh", "elu"])
def test_invertible_feature_maps_round_trip(name):
    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(sea.feature_inverse(sea.feature_forward(x, name), name), x, atol=1e-3)


def test_sqexp_inverse_keeps_the_sign():
    x = torch.linspace(-4, 4, 100)  # excludes 0
    z = sea.feature_forward(x, "sqexp")
    assert torch.allclose(z, torch.exp(-0.5 * x * x))
    assert torch.allclose(sea.feature_inverse(z, "sqexp", sign=x), x, atol=2e-3)
    assert torch.all(sea.feature_inverse(z, "sqexp") >= 0)  # without a sign only |x| comes back


@pytest.mark.parametrize("feature", sea.FEATURE_MAPS)
@pytest.mark.parametrize("center", [True, False])
def test_k1_without_or_with_feature_map_is_identity(feature, center):
    h, hp, hn = _acts()
    ed = sea.fit_from_activations({"neutral": {Site("resid", 0): h}, "positive": {Site("resid", 0): hp},
                                   "negative": {Site("resid", 0): hn}}, 1.0, 1.0, feature, center)
    e = ed.edits[Site("resid", 0)]
    assert torch.allclose(e.matrix, torch.eye(6), atol=1e-6)
    x = torch.randn(3, 4, 6) * 0.5
    tol = 1e-6 if feature == "none" else 5e-3
    assert torch.allclose(ed.edit_fn(Site("resid", 0))(x), x, atol=tol)


def test_k1_editor_leaves_the_model_unchanged(tiny):
    model, tok = tiny
    demos = [sea.Demo("q : what is the capital of velo ? a :", " marin .", " duto .", neutral=" ra .")] * 3
    demos += [sea.Demo("review : the food was", " great", " awful", neutral=" ok")] * 3
    ed = sea.fit_sea(model, tok, demos, ["resid.0", "resid.1"], 1.0, 1.0)
    ids = tok(["review : the hotel was great ."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with ed.apply(model):
            edited = model(input_ids=ids).logits
    assert torch.allclose(base, edited, atol=1e-4)


def test_fitted_editor_changes_outputs_and_round_trips(tiny, tmp_path):
    model, tok = tiny
    from alignlab.testbed.tasks import fact_demos
    from alignlab.testbed.world import World

    demos = fact_demos(World(), "train")[:24]
    ed = sea.fit_sea(model, tok, demos, ["resid.1"], 0.9, 0.9, feature="tanh")
    e = ed.edits[Site("resid", 1)]
    assert 0 < e.k_pos < 64 and 0 < e.k_neg < 64
    ids = tok(["q : what is the capital of velo ? a :"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = model(input_ids=ids).logits
        with ed.apply(model):
            edited = model(input_ids=ids).logits
        loaded = sea.SEAEditor.load(ed.save(tmp_path / "ed"))
        with loaded.apply(model):
            again = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.allclose(base, edited, atol=1e-3)
    assert torch.equal(edited, again)
    assert torch.equal(base, after)
    assert loaded.feature == "tanh" and loaded.edits[Site("resid", 1)].k_pos == e.k_pos


def test_layer_score_prefers_separating_layers():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(30, 8, generator=g)
    mixed = sea.layer_score(base, base[torch.randperm(30, generator=g)])
    sep = torch.zeros(8)
    sep[0] = 3.0
    separated = sea.layer_score(base + sep, base - sep)
    assert separated > 5 * mixed
    assert math.isclose(sea.layer_score(2 * (base + sep), 2 * (base - sep)), separated, rel_tol=1e-9)  # scale-free


def test_top_sites_keeps_the_best_scoring_sites_best_first():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(30, 8, generator=g)
    sep = torch.zeros(8)
    sep[0] = 3.0
    a, b, c = Site("resid", 0), Site("resid", 1), Site("mlp", 1)
    pos = {a: base, b: base + sep, c: base + 2 * sep}
    neg = {a: base[torch.randperm(30, generator=g)], b: base - sep, c: base - 2 * sep}
    acts = {"neutral": {s: base for s in pos}, "positive": pos, "negative": neg}
    top, ranked = sea.top_sites(acts, 2)
    assert [s for s, _ in ranked][2] == a  # the unseparated site scores last
    assert list(top["positive"]) == [s for s, _ in ranked[:2]] and set(top) == set(acts)
    assert top["negative"][b] is neg[b]
    assert sea.top_sites(acts, 0)[0] is acts  # n ≤ 0 keeps every site


def test_bad_inputs_are_clear_errors(tiny):
    model, tok = tiny
    from alignlab.errors import ConfigError, DataError

    with pytest.raises(DataError):
        sea.cross_covariance(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="feature map"):
        sea.feature_forward(torch.zeros(2), "relu")
    with pytest.raises(ConfigError, match="per head"):
        sea.collect(model, tok, [sea.Demo("a", " b", " c", " d")], ["heads.0"])
    with pytest.raises(DataError):
        sea.collect(model, tok, [], ["resid.0"])
