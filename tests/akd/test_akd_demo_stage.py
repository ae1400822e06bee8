"""The AKD demo stage runs end to end (quick settings, tiny model as both sides)."""


def test_akd_stage_quick(tiny_dir, tmp_path):
    from alignlab.demo_stages import DemoContext
    from alignlab.demo_stages.akd import run
    from alignlab.testbed.world import World

    res = run(DemoContext(world=World(), base_model=str(tiny_dir), out_dir=tmp_path, quick=True, seed=0))
    teacher, before, after = res.rows
    for row in (teacher, before, after):
        assert 0.0 <= row["pass@1"] <= 1.0
    assert after["method"].startswith("student after 1")
    assert (tmp_path / "akd" / "attempts").is_dir() and any((tmp_path / "akd" / "attempts").iterdir())
