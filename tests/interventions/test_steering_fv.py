"""Steering vectors and function vectors: hand-checked extraction, application, save/load."""

from __future__ import annotations

import pytest
import torch

from alignlab.interventions import function_vectors as fvm
from alignlab.interventions.hooks import Hooks, Site, head_to_residual, last_token_activations
from alignlab.interventions.steering import (
    ContrastPair,
    SteeringVector,
    is_monotonic,
    train_steering_vector,
)


class CharTok:
    """A character tokenizer for the random-weight family models (vocab 64)."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [2 + ord(c) % 60 for c in text]}


def test_steering_vector_is_mean_difference_at_answer_token(tiny):
    model, tok = tiny
    pairs = [ContrastPair("review : the food was", " great", " awful"),
             ContrastPair("review : the room was", " clean", " dirty")]
    vec = train_steering_vector(model, tok, pairs)
    ids = lambda t: tok(t, return_tensors="pt")["input_ids"]  # noqa: E731
    with torch.no_grad():
        diffs = []
        for p in pairs:
            hp = model(input_ids=ids(p.prompt + p.positive), output_hidden_states=True).hidden_states
            hn = model(input_ids=ids(p.prompt + p.negative), output_hidden_states=True).hidden_states
            diffs.append(hp[1][0, -1] - hn[1][0, -1])  # hidden_states[1] = after block 0
    assert torch.allclose(vec.vectors[0], torch.stack(diffs).mean(0), atol=1e-5)


def test_steering_adds_c_times_v_and_round_trips(tiny, tmp_path):
    model, tok = tiny
    v = torch.randn(64)
    vec = SteeringVector({1: v})
    ids = tok(["review : the food was"], return_tensors="pt")["input_ids"]
    with torch.no_grad(), Hooks(model) as h:
        h.read("resid.1", "last")
        model(input_ids=ids)
        with vec.apply(model, 2.5, 1, positions="last"):
            h.read("resid.1", "last")  # registered after the edit: sees the edited stream
            model(input_ids=ids)
    base, steered = h.captured[Site("resid", 1)][0], h.captured[Site("resid", 1)][-1]
    assert torch.allclose(steered - base, 2.5 * v, atol=1e-5)
    loaded = SteeringVector.load(vec.save(tmp_path / "v"))
    assert torch.equal(loaded.vectors[1], v)
    with pytest.raises(Exception, match="no layer 0"):
        vec.apply(model, 1.0, 0)


def test_is_monotonic():
    assert is_monotonic([-1.0, 0.0, 0.0, 2.0]) and not is_monotonic([0.0, 1.0, 0.5])
    assert is_monotonic([3, 1, 0], increasing=False)


def test_icl_prompts_shuffle_labels_and_exclude_query():
    pairs = [(f"x{i}", f"y{i}") for i in range(12)]
    t = fvm.ICLTemplate()
    clean = fvm.icl_prompts(pairs, 5, 4, t, seed=0)
    for prompt, ans in clean:
        q = prompt.rsplit(" ; ", 1)[-1].removesuffix(" ->")
        assert ans == "y" + q[1:] and prompt.count(f"{q} ->") == 1
        shots = [s.split(" -> ") for s in prompt.split(" ; ")[:-1]]
        assert all(y == "y" + x[1:] for x, y in shots)
    shuffled = fvm.icl_prompts(pairs, 5, 4, t, seed=0, shuffle_labels=True)
    for prompt, _ in shuffled:
        shots = [s.split(" -> ") for s in prompt.split(" ; ")[:-1]]
        assert all(y != "y" + x[1:] for x, y in shots)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_indirect_effects_match_full_recompute(family, make_family_model):
    """The cached last-token patching equals patching in a full forward pass."""
    model = make_family_model(family)
    tok = CharTok()
    t = fvm.ICLTemplate(shot="{x}={y},", query="{x}=", answer_prefix="")
    pairs = [("ab", "c"), ("de", "f"), ("gh", "i"), ("jk", "l"), ("mn", "o"), ("pq", "r")]
    corrupted = fvm.icl_prompts(pairs, 4, 3, t, seed=3, shuffle_labels=True)
    mean = torch.randn(2, 4, 8)
    fast = fvm.indirect_effects(model, tok, corrupted, mean, t, batch_size=3)
    tgt = torch.tensor(fvm.first_token_ids(tok, [a for _, a in corrupted], ""))

    def probs(edit=None):
        out = []
        for (p, _), y in zip(corrupted, tgt):
            ids = torch.tensor([tok(p)["input_ids"]])
            with torch.no_grad(), Hooks(model) as h:
                if edit:
                    h.edit(Site("heads", edit[0]), fvm._patch_head(edit[1], mean[edit[0], edit[1]]), "last")
                out.append(float(model(input_ids=ids).logits[0, -1].softmax(-1)[y]))
        return torch.tensor(out)

    base = probs()
    for layer, head in [(0, 0), (1, 3)]:
        assert fast[layer, head] == pytest.approx(float((probs((layer, head)) - base).mean()), abs=1e-5)


def test_function_vector_is_sum_of_top_heads_through_out_proj(make_family_model, tmp_path):
    model = make_family_model("qwen2")
    mean = torch.randn(2, 4, 8)
    effects = torch.tensor([[0.1, 0.5, -0.2, 0.0], [0.3, 0.05, 0.4, -0.1]])
    fv = fvm.build_function_vector(model, mean, effects, top_k=3)
    assert fv.heads == [(0, 1), (1, 2), (1, 0)]
    want = sum(head_to_residual(model, ly, hd, mean[ly, hd]) for ly, hd in [(0, 1), (1, 2), (1, 0)])
    assert torch.allclose(fv.vector, want, atol=1e-6)
    loaded = fvm.FunctionVector.load(fv.save(tmp_path / "fv"))
    assert loaded.heads == fv.heads and torch.equal(loaded.vector, fv.vector)


def test_mean_head_activations_shape_and_value(make_family_model):
    model = make_family_model("gpt_neox")
    tok = CharTok()
    prompts = ["ab=c,de=", "gh=i,jk="]
    mean = fvm.mean_head_activations(model, tok, prompts)
    acts = last_token_activations(model, tok, prompts, ["heads.1"])[Site("heads", 1)]
    assert mean.shape == (2, 4, 8) and torch.allclose(mean[1], acts.mean(0))


def _word_tokenizer(bos_by_default: bool):
    """A word-level fast tokenizer with a BOS token; Llama-style (BOS added by default) or not."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "->", ";"] + [f"w{i}" for i in range(20)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos_by_default:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.mark.parametrize("bos_by_default", [True, False])
def test_fv_prompts_start_with_bos_exactly_when_the_tokenizer_adds_it(bos_by_default, make_family_model):
    model = make_family_model("llama")
    tok = _word_tokenizer(bos_by_default)
    assert fvm.adds_bos(tok) == bos_by_default and tok.bos_token_id == 1
    pairs = [(f"w{i}", f"w{i + 10}") for i in range(8)]
    t = fvm.ICLTemplate()
    fed: list[list[int]] = []

    def record(_module, args):
        for row in args[0].tolist():
            fed.append([i for i in row if i != tok.pad_token_id])  # left padding stripped

    handle = model.get_input_embeddings().register_forward_pre_hook(record)
    try:
        fv = fvm.extract(model, tok, pairs, t, n_prompts=3, n_shots=2, top_k=2, seed=0)
        fvm.accuracy_by_layer(model, tok, fv, pairs[:2], t, n_shots_baseline=2, shot_pool=pairs)
    finally:
        handle.remove()
    full = [ids for ids in fed if len(ids) > 1]  # the cached CIE step feeds the last token alone
    assert full and all((ids[0] == 1) == bos_by_default for ids in full)
    assert all(ids.count(1) == (1 if bos_by_default else 0) and 2 not in ids for ids in full)  # no EOS
    prompt = t.prompt(pairs[:2], "w5")
    assert fvm.prompt_ids(tok, [prompt])[0] == tok(prompt)["input_ids"]  # = the tokenizer's default encoding
