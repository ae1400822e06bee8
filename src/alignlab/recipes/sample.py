"""`alignlab sample` and `alignlab chat`: try a model (or a run's final model) without writing Python.

Not training recipes: they print completions and write no run folder. `model` may be a model
folder, a hub id, a built-in name, or a run folder (its `final/` model is used). A bare word on
the command line is the model: `alignlab sample runs/sft-… prompt="How was the hotel?"`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from alignlab.config import bounded
from alignlab.errors import ConfigError
from alignlab.method_settings import SamplingSettings

RAW_KEYS = ("prompt", "system")  # command-line values read as plain text


def _sampling() -> SamplingSettings:
    return SamplingSettings(max_new_tokens=64, temperature=0.8, top_p=0.95, batch_size=16)


@dataclass
class SampleConfig:
    """Sample completions from a model or a run folder (its final/ model) and print them.
    prompt is a string or a list ('-' reads one prompt per line from stdin); chat=true wraps
    each prompt as a user turn in the model's chat template."""

    model: str = ""
    prompt: list[str] | str = ""
    chat: bool = True
    system: str = ""  # an optional system message (chat=true)
    n: int = bounded(1, ge=1)  # completions per prompt
    generation: SamplingSettings = field(default_factory=_sampling)
    seed: int = 0


@dataclass
class ChatConfig:
    """Chat with a model or a run folder (its final/ model) on stdin: one user turn per line,
    the history kept through the chat template; EOF (Ctrl-D) or /exit ends, /reset forgets."""

    model: str = ""
    system: str = ""
    generation: SamplingSettings = field(default_factory=_sampling)
    seed: int = 0


def model_source(spec: str, key: str = "model") -> str:
    """What to load for `spec`: RUN/final for a run folder, else `spec` itself. A run folder with
    no final model, or a reward model, is a ConfigError naming `key`."""
    if not spec:
        raise ConfigError(f"{key}: give a model (a folder, a hub id, a built-in name or a run folder)")
    p = Path(spec).expanduser()
    if (p / "final").is_dir():
        p = p / "final"
    elif p.is_dir() and any((p / f).exists() for f in ("metrics.jsonl", "config.yaml", "checkpoints")) \
            and not (p / "config.json").exists():
        raise ConfigError(f"{key}: run folder {p} has no final/ model yet (still running, or stopped before "
                          "the end: rerun its command to resume)")
    if (p / "config.json").is_file():
        import json

        arch = json.loads((p / "config.json").read_text()).get("architectures") or []
        if any("SequenceClassification" in a for a in arch):
            raise ConfigError(f"{key}: {p} is a reward model (a scoring head), not a model that generates text")
        return str(p)
    return spec


def load(spec: str, key: str = "model"):
    """(model, tokenizer) of `spec`, frozen, on this process's accelerator."""
    from alignlab.models import load_model

    return load_model(model_source(spec, key), trainable=False)


def _prompts(cfg: SampleConfig, stdin: TextIO) -> list[str]:
    prompts = [cfg.prompt] if isinstance(cfg.prompt, str) else list(cfg.prompt)
    if prompts == ["-"]:
        prompts = [line.rstrip("\n") for line in stdin if line.strip()]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ConfigError("prompt: give a prompt (a string, a list, or '-' to read lines from stdin)")
    return prompts


def _messages(system: str, user: str) -> list[dict[str, str]]:
    """[system?, user] — one turn to render."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def render(tok, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation in the chat template, ready for the assistant's turn."""
    if not getattr(tok, "chat_template", None):
        raise ConfigError("chat: this model's tokenizer has no chat template; use `alignlab sample chat=false`")
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def generate(model, tok, ids: list[list[int]], gen: SamplingSettings, generator) -> list[str]:
    """One sampled completion per prompt (token ids), stripped."""
    from alignlab.generation import sample

    out = sample(model, tok, ids, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature,
                 top_p=gen.top_p, batch_size=gen.batch_size, generator=generator, backend=gen.backend)
    return [t.strip() for t in out.texts]


def run_sample(cfg: SampleConfig, stdin: TextIO | None = None, stdout: TextIO | None = None) -> list[list[str]]:
    """Print `cfg.n` completions of each prompt (to stdout); returns them (per prompt)."""
    import torch

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout

    prompts = _prompts(cfg, stdin)
    model, tok = load(cfg.model)
    ids = [render(tok, _messages(cfg.system, p)) if cfg.chat else tok(p)["input_ids"] for p in prompts]
    g = torch.Generator().manual_seed(cfg.seed)
    draws = [generate(model, tok, ids, cfg.generation, g) for _ in range(cfg.n)]
    outs = [[d[i] for d in draws] for i in range(len(prompts))]
    if len(prompts) == 1 and cfg.n == 1:
        print(outs[0][0], file=stdout)
        return outs
    for i, (p, completions) in enumerate(zip(prompts, outs), 1):
        print(f"[{i}] {p}", file=stdout)
        for j, c in enumerate(completions, 1):
            print(f"  {j}> {c}" if cfg.n > 1 else f"  > {c}", file=stdout)
    return outs


def context_limit(model, tok, reserve: int) -> int:
    """Prompt tokens the model can take while leaving `reserve` for the reply."""
    n = getattr(model.config, "max_position_embeddings", None) or getattr(tok, "model_max_length", 2048)
    return max(1, min(int(n), 1_000_000) - reserve)


def fit_history(tok, history: list[dict[str, str]], limit: int) -> list[int]:
    """The conversation's prompt ids within `limit` tokens: the oldest turns after the system
    message are dropped (in place) until it fits; a single over-long turn keeps its last tokens."""
    ids = render(tok, history)
    first = 1 if history and history[0]["role"] == "system" else 0
    while len(ids) > limit and len(history) - first > 1:
        del history[first]
        ids = render(tok, history)
    return ids[-limit:]


def run_chat(cfg: ChatConfig, stdin: TextIO | None = None, stdout: TextIO | None = None) -> list[dict[str, str]]:
    """The chat loop on stdin / stdout; returns the conversation (what the model still sees)."""
    import torch

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout

    model, tok = load(cfg.model)
    render(tok, _messages(cfg.system, "hi"))  # fail now, not at the first turn, without a chat template
    start = [{"role": "system", "content": cfg.system}] if cfg.system else []
    history = list(start)
    limit = context_limit(model, tok, cfg.generation.max_new_tokens)
    g = torch.Generator().manual_seed(cfg.seed)
    from alignlab.progress import is_terminal

    interactive = is_terminal(stdin)
    if interactive:
        print(f"chat with {cfg.model} — /reset forgets the conversation, Ctrl-D or /exit ends", file=stdout)
    while True:
        if interactive:
            print("you> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(start)
            print("(conversation forgotten)", file=stdout)
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        reply = generate(model, tok, [fit_history(tok, history, limit)], cfg.generation, g)[0]
        history.append({"role": "assistant", "content": reply})
        print(f"assistant> {reply}", file=stdout, flush=True)
    if interactive:
        print(file=stdout)
    return history


def config_from_words(cls: type, config: str | None, words: list[str]) -> Any:
    """Load `cls` from -c CONFIG and the command line: a bare word is `model`; `prompt=` and
    `system=` are taken as plain text (not YAML, so 'a: b' stays a string), several `prompt=`
    make a list."""
    from alignlab.config import load_config

    bare = [w for w in words if "=" not in w]
    if len(bare) > 1:
        raise ConfigError(f"give one model, got {bare} (quote a prompt: prompt=\"...\")")
    text = {k: [w.split("=", 1)[1] for w in words if w.startswith(f"{k}=")] for k in RAW_KEYS}
    rest = [w for w in words if "=" in w and w.split("=", 1)[0] not in RAW_KEYS]
    cfg = load_config(cls, config, rest + [f"model={w}" for w in bare])
    for key, values in text.items():
        if not values:
            continue
        if not hasattr(cfg, key) or (key != "prompt" and len(values) > 1):
            raise ConfigError(f"command line: '{key}=' " + ("is not a key of this command" if not hasattr(cfg, key)
                                                          else "given more than once"))
        setattr(cfg, key, values[0] if len(values) == 1 else values)
    return cfg


def _add(sub: argparse._SubParsersAction, name: str, help: str, cls: type, fn) -> None:
    """A subcommand with the one flag style (-c CONFIG, key=value); a bare word is the model."""
    from alignlab.recipe import add_config_parser

    p = add_config_parser(sub, name, help, cls)
    p.add_argument("--config", "-c", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="MODEL | key=value",
                   help="the model or run folder, then config overrides, e.g. generation.temperature=0.7")

    def handler(args: argparse.Namespace) -> int:
        fn(config_from_words(cls, args.config, list(args.overrides or [])))
        return 0

    p.set_defaults(func=handler, config_cls=cls)


def register(sub: argparse._SubParsersAction) -> None:
    _add(sub, "sample", "Print sampled completions of a model or run (chat template, sampling options)",
         SampleConfig, run_sample)
    _add(sub, "chat", "Chat with a model or run on stdin (history kept through the chat template)",
         ChatConfig, run_chat)
