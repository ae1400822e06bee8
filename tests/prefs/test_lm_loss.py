"""causal_lm_loss (LM head at loss positions only) equals the masked mean NLL from full logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignlab.losses.lm import causal_lm_loss


def test_head_at_loss_positions_equals_full_logits(tiny):
    model, _ = tiny
    ids = torch.tensor([[5, 6, 7, 8, 9, 0], [11, 12, 13, 14, 15, 16]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    loss_mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1]])
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        loss, info = causal_lm_loss(model, {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask})
    finally:
        handle.remove()
    assert seen == [torch.Size([1, 5, model.config.vocab_size])]  # 5 loss tokens, not 2 × 6 positions
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        want = (nll * loss_mask[:, 1:].reshape(-1)).sum() / 5
    assert float(info["tokens"]) == 5
    assert torch.allclose(loss.detach(), want, atol=1e-5)
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad(set_to_none=True)  # the model is shared by the session


def test_packed_batch_equals_padded_loss_and_gradients(tiny):
    """Packed rows (block-diagonal mask, restarted positions) give the padded batch's loss and gradients."""
    from alignlab.data.chat import Encoded, collate
    from alignlab.losses.lm import packed_lm_loss
    from alignlab.recipes.sft import collate_packed

    model, tok = tiny
    items = [Encoded([5, 6, 7, 8, 9], [0, 0, 1, 1, 1]), Encoded([11, 12, 13], [0, 1, 1]),
             Encoded([14, 15], [0, 1]), Encoded([16, 17, 18, 19, 20, 21, 22], [0, 0, 0, 1, 1, 1, 1])]
    packed = collate_packed(items, tok.pad_token_id, 0.0)
    assert packed["input_ids"].shape == (1, 17)  # attn_weight 0: one row, no padding
    assert sorted(packed["target_ids"].tolist()) == [7, 8, 9, 12, 13, 15, 19, 20, 21, 22]
    results = []
    for loss_fn, batch in ((causal_lm_loss, collate(items, tok.pad_token_id)), (packed_lm_loss, packed)):
        model.zero_grad(set_to_none=True)
        loss, info = loss_fn(model, batch)
        loss.backward()
        results.append((loss.detach(), float(info["tokens"]),
                        torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    model.zero_grad(set_to_none=True)
    (l1, n1, g1), (l2, n2, g2) = results
    assert n1 == n2 == 10
    assert torch.allclose(l1, l2, atol=1e-5)
    assert torch.allclose(g1, g2, atol=1e-5)
