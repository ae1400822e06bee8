"""The PSLE demo stage runs end to end (quick settings, tiny model) and keeps every sample."""


def test_psle_stage_quick(tiny_dir, tmp_path):
    from alignlab.demo_stages import DemoContext
    from alignlab.demo_stages.psle import run
    from alignlab.testbed.world import World

    res = run(DemoContext(world=World(), base_model=str(tiny_dir), out_dir=tmp_path, quick=True))
    start, after = res.rows
    assert start["method"] == "start (student)" and after["method"] == "PSLE"
    assert after["pairs"] + after["sft_items"] == 2 * 8  # every query of every iteration is used
    assert after["samples_kept"] == 2 * 2 * 8  # two responses per query, nothing thrown away
    assert res.figures[0].exists()
