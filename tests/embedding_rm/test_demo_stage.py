"""The demo stage runs every step (quick settings, tiny model) and reports sane numbers."""

import numpy as np


def test_embedding_rm_stage_quick(world, tiny_dir, tmp_path):
    from alignlab.demo_stages import DemoContext
    from alignlab.demo_stages.embedding_rm import run

    res = run(DemoContext(world=world, base_model=str(tiny_dir), out_dir=tmp_path, quick=True))
    methods = [r["method"] for r in res.rows]
    assert methods[0] == "gold (oracle)" and "single GBDT" in methods and "3 MLPs, mean−1·std" in methods
    oracle = res.rows[0]
    assert oracle["pair_acc"] == 1.0 and oracle["spearman"] == 1.0
    for r in res.rows[1:]:
        assert 0 <= r["pair_acc"] <= 1 and np.isfinite(r["bon@8"]) and r["bon@8"] <= oracle["bon@8"] + 1e-9
    assert res.figures[0].exists()
