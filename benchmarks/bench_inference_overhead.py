"""Generation throughput with a SEA editor on every layer and with a steering vector,
against the unedited model, measured in one run (interleaved rounds, median tokens/s).

    python benchmarks/bench_inference_overhead.py                       # testbed student
    python benchmarks/bench_inference_overhead.py --model real:smollm2 --batch 8 --tokens 48

Targets (CPU): steering ≤ 10 % overhead, SEA on all layers ≤ 25 %.
Greedy decoding with EOS ignored, so every configuration generates the same number of tokens.
Overhead = unedited tokens/s ÷ edited tokens/s − 1, from the median and from the best round
(the best round is the least disturbed by other processes on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from alignlab.generation import sample
from alignlab.interventions import sea
from alignlab.interventions.hooks import Site, num_layers
from alignlab.interventions.steering import ContrastPair, train_steering_vector
from alignlab.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="testbed:student")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--feature", default="none", help="SEA feature map: none | tanh | elu | sqexp")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, trainable=False)
    n_layers = num_layers(model)
    prompts = [f"review : the {w} was" for w in ["food", "room", "movie", "hotel"]] * (args.batch // 4 + 1)
    prompts = prompts[: args.batch]

    pairs = [ContrastPair(p, " great", " awful") for p in prompts]
    vec = train_steering_vector(model, tok, pairs, [n_layers // 2])
    demos = [sea.Demo(p, " great .", " awful .", neutral=" ok .") for p in prompts]
    demos += [sea.Demo(p + " very", " good .", " bad .", neutral=" plain .") for p in prompts]
    editor = sea.fit_sea(model, tok, demos, [Site("resid", i) for i in range(n_layers)], 0.99, 0.99, args.feature)

    configs = {
        "unedited": lambda: _null(),
        f"steering (layer {n_layers // 2})": lambda: vec.apply(model, 4.0, n_layers // 2),
        f"SEA {args.feature} (all {n_layers} layers)": lambda: editor.apply(model),
    }

    def run_once(ctx) -> float:
        with ctx():
            t = time.perf_counter()
            out = sample(model, tok, prompts, max_new_tokens=args.tokens, temperature=0.0,
                         batch_size=args.batch, stop_ids=[])
            dt = time.perf_counter() - t
        return sum(len(r) for r in out.response_ids) / dt

    for ctx in configs.values():  # warm-up
        run_once(ctx)
    speeds: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, ctx in configs.items():
            speeds[name].append(run_once(ctx))
    base, best = statistics.median(speeds["unedited"]), max(speeds["unedited"])
    print(f"model={args.model} threads={torch.get_num_threads()} batch={args.batch} new_tokens={args.tokens} "
          f"rounds={args.rounds} ({time.strftime('%Y-%m-%d %H:%M')})")
    print(f"{'configuration':32s} {'tok/s median':>12s} {'overhead':>9s} {'tok/s best':>11s} {'overhead':>9s}")
    for name, s in speeds.items():
        med, top = statistics.median(s), max(s)
        print(f"{name:32s} {med:12.1f} {100 * (base / med - 1):8.1f}% {top:11.1f} {100 * (best / top - 1):8.1f}%")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    main()
