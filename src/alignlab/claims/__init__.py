"""`alignlab claims`: re-measure each seed paper's headline claim on the built-in test world.

Each row (`alignlab.claims.rows`, listed in `registry.ROWS`) measures one claim per seed; the
runner puts 95 % t intervals on every number and applies one stated verdict rule
(`alignlab.claims.stats`); `report` writes CLAIMS.md, claims.json and plots.
"""
