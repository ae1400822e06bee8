"""Optional vLLM rollout backend (`pip install 'alignlab[vllm]'`, CUDA only; never required).

`VLLMSampler` is a drop-in for `alignlab.generation.sample` that returns the same `Samples`
(prompt ids, response ids ending with the stop token when one was drawn, texts without stop
tokens). vLLM runs colocated in the training process, as TRL's "colocate" mode does: one engine
per process (`distributed_executor_backend="external_launcher"`, no server), seeded per request
from alignlab's generator, stopping exactly on alignlab's stop ids (`ignore_eos` + `stop_token_ids`).

The engine keeps its own copy of the weights, so after each update the trainer pushes the policy's
weights into it (`sync_weights`; `VLLMSync` is the online-loop callback that does it after every
iteration). `hf_weights` turns the policy into the plain Hugging Face names vLLM loads: LoRA
merged into the base weights for the push and unmerged after, PEFT / value-head / compile /
activation-checkpoint prefixes stripped, FSDP2 shards gathered.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from alignlab.errors import ConfigError
from alignlab.generation import Samples, stop_token_ids
from alignlab.train.online import Callback

INSTALL_HINT = "pip install 'alignlab[vllm]' (vLLM needs a CUDA GPU)"
_STRIP = ("_checkpoint_wrapped_module.", "_orig_mod.", "modules_to_save.default.", ".base_layer")


def vllm_available() -> bool:
    """True when the vllm package can be imported."""
    return importlib.util.find_spec("vllm") is not None


def require_vllm(key: str = "generation.backend") -> None:
    """ConfigError naming `key` and the extra to install when vLLM was chosen but is not installed."""
    if not vllm_available():
        raise ConfigError(f"{key}: 'vllm' needs the vllm package, which is not installed; {INSTALL_HINT}, "
                          f"or choose another backend (auto, fast, hf)")


def vllm_name(name: str, peft_prefix: str = "lora_") -> str | None:
    """The Hugging Face checkpoint name vLLM loads for an alignlab parameter name; None for
    parameters vLLM has no place for (LoRA factors, the PPO value head, PEFT's original copies)."""
    if name.startswith("value_head.") or peft_prefix in name or "original_module" in name:
        return None
    name = name.removeprefix("base_model.model.")
    for part in _STRIP:
        name = name.replace(part, "")
    return name


@contextlib.contextmanager
def merged(model: torch.nn.Module) -> Iterator[None]:
    """LoRA adapters merged into the base weights inside, unmerged on exit (no-op without PEFT)."""
    if not hasattr(model, "merge_adapter"):
        yield
        return
    if any(hasattr(p, "full_tensor") for p in model.parameters()):
        raise ConfigError("generation.backend=vllm: a sharded (FSDP) LoRA policy cannot be merged for vLLM; "
                          "use the fast or hf backend")
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def hf_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(vLLM name, whole tensor) for every weight vLLM takes; LoRA merged while iterating (use
    inside `merged(model)`). A sharded parameter is gathered (every process must iterate)."""
    lm = getattr(model, "lm", model)  # a PolicyWithValue's language model
    prefix = getattr(lm, "prefix", "lora_")
    for name, param in lm.named_parameters():
        hf = vllm_name(name, prefix)
        if hf is None:
            continue
        if hasattr(param, "ds_id"):  # a ZeRO-3 partition: its data lives on other processes
            raise ConfigError("generation.backend=vllm does not gather DeepSpeed ZeRO-3 partitions; "
                              "use FSDP, ZeRO-2 or another backend")
        data = param.detach()
        yield hf, data.full_tensor() if hasattr(data, "full_tensor") else data


def to_samples(prompt_ids: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]], tokenizer,
               stops: Sequence[int], max_new_tokens: int) -> Samples:
    """alignlab's `Samples` from vLLM's token ids: each response cut after its first stop token (kept,
    as `generation.sample` keeps it) and at `max_new_tokens`; texts decoded without stop tokens."""
    stop_set = set(int(s) for s in stops)
    responses = []
    for out in outputs:
        ids = [int(t) for t in out][:max_new_tokens]
        cut = next((i + 1 for i, t in enumerate(ids) if t in stop_set), len(ids))
        responses.append(ids[:cut])
    texts = tokenizer.batch_decode([[t for t in r if t not in stop_set] for r in responses], skip_special_tokens=True)
    return Samples([list(p) for p in prompt_ids], responses, texts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_folder(model: torch.nn.Module, tokenizer, scratch: Path) -> str:
    """A folder vLLM can build the architecture from: the model's own source, else a fresh save."""
    lm = getattr(model, "lm", model)
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    src = getattr(getattr(base, "config", None), "_name_or_path", "") or ""
    if src and (Path(src) / "config.json").is_file():
        return src
    from safetensors.torch import save_file

    with merged(lm):  # the policy as plain Hugging Face weights (LoRA merged)
        state = {n: t.detach().cpu().contiguous() for n, t in hf_weights(model)}
    base.config.save_pretrained(scratch)
    save_file(state, str(scratch / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(scratch)
    return str(scratch)


class VLLMSampler:
    """Samples with a colocated vLLM engine; call `sync_weights(model)` after every update.

    `max_model_len`: the longest prompt plus max_new_tokens; `gpu_memory_utilization`: the share of
    the GPU the engine may take (the trainer needs the rest); `seed`: differs per process (rank)."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_model_len: int, *, gpu_memory_utilization: float = 0.3,
                 dtype: str = "auto", seed: int = 0, rank: int = 0, world: int = 1, local_rank: int = 0):
        require_vllm()
        from vllm import LLM

        self.tokenizer = tokenizer
        # the external launcher reads the torch.distributed variables (set here for a single process)
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", str(local_rank))
        os.environ.setdefault("WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        self._scratch = tempfile.TemporaryDirectory(prefix="alignlab-vllm-")
        folder = _model_folder(model, tokenizer, Path(self._scratch.name))
        self.llm = LLM(model=folder, tokenizer=folder, dtype=dtype, max_model_len=max_model_len,
                       gpu_memory_utilization=gpu_memory_utilization, seed=seed, tensor_parallel_size=1,
                       distributed_executor_backend="external_launcher", enable_prefix_caching=False)
        self.sync_weights(model)

    def engine_model(self) -> Any:
        """The model inside the colocated engine (its `load_weights` takes (name, tensor) pairs)."""
        try:
            return self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError as e:
            raise ConfigError("generation.backend=vllm: this vLLM version hides the colocated model "
                              "(llm_engine.model_executor.driver_worker.model_runner.model); "
                              "use the fast or hf backend") from e

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights (LoRA merged) into the engine and drop its prefix cache."""
        target = self.engine_model()
        with merged(getattr(model, "lm", model)):
            for name, tensor in hf_weights(model):
                target.load_weights([(name, tensor)])
        self.llm.reset_prefix_cache()

    def __call__(self, model: torch.nn.Module, tokenizer, prompts: Sequence[str] | Sequence[Sequence[int]],
                 max_new_tokens: int = 32, temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 64,
                 generator: torch.Generator | None = None, stop_ids: Sequence[int] | None = None,
                 backend: str = "vllm") -> Samples:
        """`generation.sample`'s signature and result; `model` is not run (the engine holds its weights,
        current as of the last `sync_weights`), `batch_size` is left to vLLM's scheduler."""
        from vllm import SamplingParams

        prompt_ids = [list(p) if not isinstance(p, str) else tokenizer(p, add_special_tokens=False)["input_ids"]
                      for p in prompts]
        stops = list(stop_ids if stop_ids is not None else stop_token_ids(tokenizer))
        if generator is not None:
            seeds = torch.randint(2**62, (len(prompt_ids),), generator=generator, device=generator.device).tolist()
        else:
            seeds = [None] * len(prompt_ids)
        params = [SamplingParams(n=1, temperature=max(0.0, temperature), top_p=top_p, max_tokens=max_new_tokens,
                                 seed=s, stop_token_ids=stops, ignore_eos=True, skip_special_tokens=True)
                  for s in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=params,
                                    use_tqdm=False)
        return to_samples(prompt_ids, [o.outputs[0].token_ids for o in outputs], tokenizer, stops, max_new_tokens)


class VLLMSync(Callback):
    """Online-loop callback: after each iteration's updates, push the policy's weights into vLLM.
    Put it after callbacks that change the weights at iteration end (Elastic Reset)."""

    def __init__(self, sampler: VLLMSampler):
        self.sampler = sampler

    def on_iteration(self, trainer: Any, iteration: int) -> None:
        self.sampler.sync_weights(trainer.unwrapped)
