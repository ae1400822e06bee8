"""No method knows the built-in test world: its names (`testbed:…`, `gold:…`) resolve in
`alignlab.resolve` only; methods take a reward function, prompts, items."""

from __future__ import annotations

import re
from pathlib import Path

import alignlab

ROOT = Path(alignlab.__file__).parent
ALLOWED = ("testbed/", "resolve/", "demo.py", "demo_stages/", "claims/")  # claims: re-measures papers on the built-in world


def test_only_the_resolver_the_testbed_and_the_demo_name_the_testbed():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "testbed" in line and not (rel == "cli.py" and '"alignlab.testbed.cli"' in line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_recipes_do_not_compare_reward_names():
    """`gold` names are resolved, never compared, by the recipes."""
    compare = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](gold|testbed)""")
    for path in sorted((ROOT / "recipes").glob("*.py")):
        assert not compare.search(path.read_text(encoding="utf-8")), path.name
