"""Metrics as plain functions, usable outside the trainers.

drift (KL to the initial model, held-out perplexity), multiple_choice (MC1/MC2), bias
(BBQ accuracy/unknown rate/bias score), preference (pairwise accuracy, Kendall tau,
win rate), best_of_n, benchmarks (loaders for TruthfulQA/BBQ/function-vector tasks).
"""
