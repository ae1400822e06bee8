"""OpenAssistant conversation trees: read any export shape, validate, and export for SFT / RM / RL."""

from .consensus import consensus_ranks, pairwise_wins, ranked_pairs
from .export import (
    ExportFilters,
    export_rl,
    export_rm,
    export_sft,
    pairwise_preferences,
    ranking_examples,
    rl_prompts,
    sft_threads,
    split_by_tree,
)
from .io import (
    read_messages,
    read_trees,
    validate_file,
    write_jsonl,
    write_messages,
    write_trees,
)
from .issues import DataError, Issue, ValidationReport
from .models import Label, Message, Tree
from .stats import TreeStats, stats
from .validate import build_trees, validate

__all__ = [
    "DataError",
    "ExportFilters",
    "Issue",
    "Label",
    "Message",
    "Tree",
    "TreeStats",
    "ValidationReport",
    "build_trees",
    "consensus_ranks",
    "export_rl",
    "export_rm",
    "export_sft",
    "pairwise_preferences",
    "pairwise_wins",
    "ranked_pairs",
    "ranking_examples",
    "read_messages",
    "read_trees",
    "rl_prompts",
    "sft_threads",
    "split_by_tree",
    "stats",
    "validate",
    "validate_file",
    "write_jsonl",
    "write_messages",
    "write_trees",
]
