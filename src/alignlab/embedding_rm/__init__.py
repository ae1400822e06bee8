"""Embedding-based reward models: embed once, train MLP/GBDT heads and ensembles, evaluate by best-of-N.

The Python API takes numpy arrays, so researchers can bring their own embeddings::

    from alignlab.embedding_rm import pairs_from_arrays, train_ensemble
    ens = train_ensemble(pairs_from_arrays(chosen_emb, rejected_emb), n_members=5)
    reward = ens.score(new_emb, aggregation="mean_minus_std")
"""

from alignlab.embedding_rm.annotate import (
    annotate,
    make_pairs,
    preference_prob,
    simulate_preferences,
)
from alignlab.embedding_rm.data import PairData, check_embeddings, pairs_from_arrays
from alignlab.embedding_rm.embed import EmbedSettings, Encoder, embed_pairs, load_encoder
from alignlab.embedding_rm.ensemble import (
    RewardEnsemble,
    aggregate,
    compare_scorers,
    split_weights,
    train_ensemble,
)
from alignlab.embedding_rm.gbdt import GBDTSettings, train_gbdt
from alignlab.embedding_rm.heads import MLPSettings, train_mlp

__all__ = [
    "EmbedSettings", "Encoder", "GBDTSettings", "MLPSettings", "PairData", "RewardEnsemble", "aggregate",
    "annotate", "compare_scorers", "check_embeddings", "embed_pairs", "load_encoder", "make_pairs", "pairs_from_arrays",
    "preference_prob", "simulate_preferences", "split_weights", "train_ensemble", "train_gbdt", "train_mlp",
]
