"""The demo's RLHF stage in quick mode on the tiny model: two runs, rows and the plot."""

from __future__ import annotations

from alignlab.demo_stages import DemoContext, rlhf


def test_rlhf_stage_quick(world, tiny_dir, tmp_path):
    ctx = DemoContext(world=world, base_model=str(tiny_dir), out_dir=tmp_path, seed=0, quick=True)
    res = rlhf.run(ctx)
    methods = [r["method"] for r in res.rows]
    assert methods[0].startswith("start") and methods[1].startswith("PPO") and methods[2].startswith("Elastic")
    assert res.rows[2]["resets"] == 2  # quick: 3 iterations x 2 optimiser steps, reset every 3 steps
    assert all(f.exists() for f in res.figures) and len(res.figures) == 2
    assert "Elastic Reset" in res.notes[0]
