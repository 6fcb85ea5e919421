"""Exact log-probability of given SIDs after a prompt, many candidates per user in one pass.

Why: beam search only returns what survives its beams. A copy prior (``repeat_prior``) needs the
model's probability of specific items -- the user's own history -- whether or not the beams found
them. Scoring each candidate as its own ``prompt + SID`` sequence would re-run the prompt once per
candidate; here the prompt runs once per user and its KV cache is shared by all candidates
("tree attention", as in ``decoding``): every candidate's first L tokens are appended at once, and
a 4D mask lets each token see only the prompt and its own candidate's earlier tokens, at the
positions a real continuation would have.
"""
from __future__ import annotations

import torch

from .decoding import prepare_prompts


@torch.inference_mode()
def score_sids(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    candidates: torch.Tensor,
) -> torch.Tensor:
    """``[users, C]`` sum of log p(token) over each candidate SID's tokens given the user's prompt.

    ``input_ids``/``attention_mask``: ``[users, T]`` prompts (either padding side), model token ids.
    ``candidates``: ``[users, C, depth]`` model token ids of each candidate's SID; padding
    candidates may hold any valid token id (the caller masks their scores).
    Memory: the second pass holds ``users x C x (depth - 1) x vocab`` logits; size the user batch
    for large (pretrained) vocabularies accordingly.
    """
    if candidates.dim() != 3:
        raise ValueError(f"candidates must be [users, C, depth], got {tuple(candidates.shape)}")
    users, n_cand, depth = candidates.shape
    device = input_ids.device
    candidates = candidates.to(device)
    ids, mask, positions, next_position = prepare_prompts(model, input_ids, attention_mask)
    if n_cand == 0:
        return torch.zeros(users, 0, device=device)
    prompt_len = ids.shape[1]

    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=depth > 1, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [users, V]
        score = first.gather(1, candidates[:, :, 0])  # [users, C]
        if depth == 1:
            return score
        # Slot s = c * (depth - 1) + j holds candidate c's token j (j < depth - 1); its logits
        # predict token j + 1.
        steps = depth - 1
        slots = n_cand * steps
        cand_of = torch.arange(slots, device=device) // steps
        tok_of = torch.arange(slots, device=device) % steps
        visible = (cand_of[:, None] == cand_of[None, :]) & (tok_of[None, :] <= tok_of[:, None])  # [slots, slots]
        dtype = model.get_input_embeddings().weight.dtype
        blocked = torch.finfo(dtype).min
        tree_bias = torch.zeros(slots, slots, dtype=dtype, device=device).masked_fill(~visible, blocked)
        prompt_bias = torch.zeros(users, 1, 1, prompt_len, dtype=dtype, device=device)
        prompt_bias = prompt_bias.masked_fill((mask == 0)[:, None, None, :], blocked).expand(-1, 1, slots, -1)
        bias = torch.cat([prompt_bias, tree_bias.expand(users, 1, slots, slots)], dim=-1)
        out = model(
            input_ids=candidates[:, :, :-1].reshape(users, slots),
            attention_mask=bias,
            position_ids=next_position + tok_of.expand(users, slots),
            cache=out.cache,
            use_cache=False,
        )
        logits = out.logits.float()  # [users, slots, V]
        targets = candidates[:, :, 1:].reshape(users, slots, 1)
        token_logp = logits.gather(2, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        return score + token_logp.view(users, n_cand, steps).sum(-1)
    finally:
        model.train(was_training)
