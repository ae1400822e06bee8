"""Every alignlab command's recipe: a typed config + run(cfg) -> RunResult."""
