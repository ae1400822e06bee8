"""The model card of a trained model: final/README.md in the Hugging Face Hub's format.

YAML front matter (`base_model`, `library_name`, `pipeline_tag`, `datasets`, `tags`, `license`)
then what a reader needs: the method, the data, key metrics, how to load it, the training config
and the command that reproduces it. Everything is read from the run folder (config.yaml,
metrics.jsonl, command.txt) and the model folder, so `Trainer.save_final` writes it for every
recipe; a recipe may pass what it knows better (its name, its headline metrics).

Only Hub ids go into the front matter's `base_model` / `datasets` (the Hub refuses a card whose
`base_model` is not a model on the Hub); local paths and resolver names are listed in the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# method key → (Hub tag, one line on what the training did)
METHODS: dict[str, tuple[str, str]] = {
    "sft": ("sft", "Supervised fine-tuning (SFT): next-token cross-entropy on the assistant / response "
            "tokens of chat threads or prompt-response pairs."),
    "rm": ("reward-model", "Reward model: a scalar head trained on ranked responses with a pairwise "
           "Bradley-Terry loss, −log σ(s_better − s_worse), plus a small penalty on the scores."),
    "dpo": ("dpo", "Direct Preference Optimization (DPO, Rafailov et al. 2023): a logistic loss on β × the "
            "policy-vs-reference log-ratio margin between chosen and rejected responses."),
    "ipo": ("ipo", "Identity Preference Optimisation (IPO, Azar et al. 2023): a squared loss pulling the "
            "policy-vs-reference log-ratio margin of chosen over rejected towards 1/(2β)."),
    "cal_dpo": ("cal-dpo", "Cal-DPO (Xiao et al. 2024): DPO plus a calibration term that pulls the implicit "
                "rewards of chosen and rejected responses to the scale of the true rewards (±1/(2β))."),
    "ppo": ("ppo", "PPO (RLHF): sampled responses scored by a reward, clipped policy and value updates with "
            "GAE and a token-level KL penalty to a reference model."),
    "elastic_reset": ("elastic-reset", "Elastic Reset (Noukhovitch et al. 2023): PPO whose policy is reset "
                      "to an exponential moving average of itself every n updates, and the average to the "
                      "initial model, to hold down drift."),
    "psle": ("psle", "PSLE (progressively selective label enhancement): responses sampled with and without a "
             "principle; pairs whose reward gap exceeds a shrinking threshold train a ranking loss, the "
             "rest reward-weighted SFT, always on the plain query."),
    "akd": ("akd", "AKD (adversarial knowledge distillation for code): exercises drawn where the student "
            "fails most; passing teacher solutions ≻ failing student ones train a preference loss, "
            "plus distillation (NLL) on passing teacher solutions."),
}
DATA_KEYS = ("data", "eval_data", "prompts", "queries", "problems", "eval_problems")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt", ".gz", ".yaml", ".yml")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_CACHE_DIR = re.compile(r"^(?:models|datasets)--([^/]+?)--([^/]+)$")
MAX_METRICS = 12


def hub_id(name: str) -> str | None:
    """`name` as a Hub repo id: an id itself (`org/name`, not a local path or file), or the id a
    local Hub-cache snapshot folder (`.../models--org--name/snapshots/...`) holds; else None."""
    path = Path(name)
    if path.exists():
        for part in path.resolve().parts:
            m = _CACHE_DIR.match(part)
            if m:
                return f"{m.group(1)}/{m.group(2)}"
        return None
    if _HUB_ID.match(name) and not name.lower().endswith(FILE_SUFFIXES) and not name.startswith("."):
        return name
    return None


def method_of(recipe: str, cfg: Mapping[str, Any]) -> str:
    """The method key (see METHODS) of a run of `recipe` with config `cfg`."""
    if recipe == "prefs":
        return str((cfg.get("preference") or {}).get("loss", "dpo"))
    if recipe == "ppo":
        return "elastic_reset" if (cfg.get("elastic_reset") or {}).get("enabled") else "ppo"
    return recipe


def data_specs(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config key, source) of each data source a run read: a path, a Hub id or a resolver name."""
    out = []
    for key in DATA_KEYS:
        v = cfg.get(key)
        if isinstance(v, Mapping):  # a data section: {path: ..., columns: ...}
            v = next((v[k] for k in ("path", "name", "source") if isinstance(v.get(k), str)), "")
        if isinstance(v, str) and v:
            out.append((key, v))
    return out


def library_of(model_dir: Path) -> tuple[str, str | None]:
    """(library_name, pipeline_tag) of a saved model folder: PEFT adapters are 'peft'."""
    adapter = _read_json(model_dir / "adapter_config.json")
    if adapter is not None:
        task = str(adapter.get("task_type", ""))
        return "peft", {"CAUSAL_LM": "text-generation", "SEQ_CLS": "text-classification"}.get(task)
    archs = (_read_json(model_dir / "config.json") or {}).get("architectures") or [""]
    arch = str(archs[0])
    tag = ("text-generation" if arch.endswith("ForCausalLM") else
           "text-classification" if arch.endswith("ForSequenceClassification") else None)
    return "transformers", tag


def license_of(base_model: str) -> str | None:
    """The license a local base-model folder's own card declares (None when unknown)."""
    readme = Path(base_model) / "README.md"
    if not readme.is_file():
        return None
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", _read_text(readme), re.S)
    meta = _yaml_dict(m.group(1)) if m else {}
    lic = meta.get("license")
    return str(lic) if isinstance(lic, str) and lic else None


def key_metrics(records: Sequence[Mapping[str, Any]], n: int = MAX_METRICS) -> list[dict[str, Any]]:
    """Rows {metric, first, last} of the run's most telling scalars (evaluations first)."""
    from alignlab.report import metric_rank
    from alignlab.runs_index import NOT_METRICS

    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_METRICS \
                    and not k.startswith("time_"):
                first.setdefault(k, v)
                last[k] = v
    order = list(last)
    keys = sorted(last, key=lambda k: (metric_rank(k), order.index(k)))[:n]
    return [{"metric": k, "first": first[k], "last": last[k]} for k in keys]


def write_model_card(
    model_dir: str | Path,
    run_dir: str | Path | None = None,
    recipe: str = "",
    base_model: str = "",
    datasets: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    license: str = "",
) -> Path:
    """Write MODEL_DIR/README.md for the model a run in `run_dir` (default: MODEL_DIR's parent)
    trained. Anything not given is read from the run: the recipe from RUN/command.txt, its folder
    name or config keys; the base model and data from RUN/config.yaml; `metrics` (e.g. a
    RunResult's) replace the table of first → last logged values from RUN/metrics.jsonl."""
    from huggingface_hub import ModelCard, ModelCardData

    from alignlab.runs import atomic_write_text, read_metrics
    from alignlab.runs_index import model_of, recipe_of

    model_dir = Path(model_dir)
    run = Path(run_dir) if run_dir is not None else model_dir.parent
    config_text = _read_text(run / "config.yaml")
    cfg = _yaml_dict(config_text)
    recipe = recipe or recipe_of(run, cfg).split(" ")[0].strip("?")
    method = method_of(recipe, cfg)
    base_model = base_model or model_of(cfg)
    sources = [("data", d) for d in datasets] if datasets is not None else data_specs(cfg)
    library, pipeline = library_of(model_dir)
    tag, about = METHODS.get(method, (method, f"Trained with alignlab's `{recipe or '?'}` recipe."))
    hub_data = [i for i in dict.fromkeys(hub_id(s) for _, s in sources) if i]
    meta = ModelCardData(
        base_model=hub_id(base_model) if base_model else None,
        library_name=library,
        pipeline_tag=pipeline,
        datasets=hub_data or None,
        tags=["alignlab", tag] if tag else ["alignlab"],
        license=license or (license_of(base_model) if base_model else None),
    )
    body = _body(model_dir, run, recipe, about, base_model, sources, library, pipeline,
                 metrics, read_metrics(run / "metrics.jsonl"), config_text)
    card = ModelCard(f"---\n{meta.to_yaml()}\n---\n\n{body}")  # parses it: bad metadata fails here
    out = model_dir / "README.md"
    atomic_write_text(out, str(card))
    return out


def _body(model_dir: Path, run: Path, recipe: str, about: str, base_model: str, sources: list[tuple[str, str]],
          library: str, pipeline: str | None, metrics: Mapping[str, Any] | None,
          records: list[dict[str, Any]], config_text: str) -> str:
    lines = [f"# {run.name}", ""]
    base = f"`{base_model}`" if base_model else "a model"
    how = f"alignlab's `{recipe}` recipe" if recipe else "alignlab"
    lines += [f"{'A LoRA adapter for' if library == 'peft' else 'Fine-tuned from'} {base} with {how}.",
              "", "## Method", "", about, ""]
    if sources:
        lines += ["## Training data", ""] + [f"- `{k}`: `{v}`" for k, v in sources] + [""]
    rows = ([{"metric": k, "value": v} for k, v in metrics.items()] if metrics is not None
            else key_metrics(records))
    if rows:
        lines += ["## Key metrics", "", "The recipe's summary of the run." if metrics is not None else
                  "From RUN/metrics.jsonl: the first and the last logged value of each, evaluations first.", ""]
        lines += _table(rows) + [""]
    lines += ["## How to use", "", "```python", *_load_snippet(model_dir, library, pipeline), "```", ""]
    if config_text:
        lines += ["## Training config", "", "RUN/config.yaml:", "", "```yaml", config_text.rstrip(), "```", ""]
    lines += ["## Reproduce", "", *_reproduce(run, recipe), ""]
    return "\n".join(lines)


def _load_snippet(model_dir: Path, library: str, pipeline: str | None) -> list[str]:
    head = "SequenceClassification" if pipeline == "text-classification" else "CausalLM"
    module, cls = ("peft", f"AutoPeftModelFor{head}") if library == "peft" else ("transformers", f"AutoModelFor{head}")
    imports = ([f"from transformers import {cls}, AutoTokenizer"] if module == "transformers" else
               [f"from {module} import {cls}", "from transformers import AutoTokenizer"])
    lines = [*imports, "",
             f'path = "{model_dir}"  # or the Hub id you pushed this folder to',
             f"model = {cls}.from_pretrained(path)", "tokenizer = AutoTokenizer.from_pretrained(path)"]
    if (model_dir / "value_head.safetensors").is_file():
        lines.append("# value_head.safetensors beside it holds the PPO value head (alignlab.rl.policy)")
    return lines


def _reproduce(run: Path, recipe: str) -> list[str]:
    command = _read_text(run / "command.txt").strip()
    if command:
        return ["The command that made this run (rerunning it resumes that run folder; give another "
                "`--out` to train again from scratch):", "", "```bash", command, "```"]
    return ["```bash", f"alignlab {recipe} -c {run / 'config.yaml'} --out {run}-again", "```"]


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return out + ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v).replace("|", "\\|")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _yaml_dict(text: str) -> dict[str, Any]:
    """`text` as a YAML mapping ({} when empty, unreadable or not a mapping)."""
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
