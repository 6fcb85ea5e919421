"""Trie-constrained beam search over SID tokens, batched over users (SPEC §4 inference).

Why not ``model.generate(prefix_allowed_tokens_fn=...)``: it calls Python once per beam per step
to build a full-vocabulary mask, runs the prompt once per beam, and copies the whole
``beams x prompt`` KV cache at every step (concatenation, then reordering).

Here the beams of a user share one sequence ("tree attention"):
- the prompt is encoded once per user; its KV cache is never replicated or reordered;
- at step ``l`` every beam's newest token is appended to its user's sequence (``beam_size``
  new positions), and a 4D attention mask lets it see only the prompt and its own ancestors,
  all at position ``prompt_length + l``; a step's cache growth is ``users x beams`` tokens;
- the step scores only the K tokens of the current SID level (gathered from the full-vocabulary
  log-softmax, so scores are true log-probabilities), masks them with one gather from the trie's
  transition table, and picks each user's best beams with one ``topk`` over ``beams x K``.
Every SID has the same length L + 1, so there are no finished hypotheses to track: the result is
exact whenever ``beam_size`` >= the number of valid prefixes at every level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sid_trie import SIDTrie

# Attention implementations that take an arbitrary additive 4D mask (flash-attention does not).
_MASKABLE_ATTENTION = ("sdpa", "eager")


@dataclass
class BeamSearchOutput:
    items: torch.Tensor  # [users, top_k] item index, -1 where fewer than top_k valid SIDs exist
    scores: torch.Tensor  # [users, top_k] sum of the SID tokens' log-probs (-inf for padding)
    codes: torch.Tensor  # [users, top_k, L + 1] SID codes of each returned item (-1 padding)


def _left_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every row's real tokens to the right end (any padding side in, left padding out), so
    one shared position is "the next token" for all users."""
    order = torch.sort(attention_mask.long(), dim=1, stable=True).indices  # pads first, order kept
    return input_ids.gather(1, order), attention_mask.long().gather(1, order)


def prepare_prompts(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
    """Checks shared by the tree-masked passes, then the prompts left-aligned:
    ``(ids, mask, positions, next_position)``, ``next_position`` being ``[users, 1]``."""
    attn = getattr(model.config, "_attn_implementation", None) or "eager"
    if attn not in _MASKABLE_ATTENTION:
        raise ValueError(f"attention implementation {attn!r} cannot take tree masks; use one of {_MASKABLE_ATTENTION}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if bool((attention_mask.sum(1) == 0).any()):
        raise ValueError("every prompt needs at least one real token (e.g. <bos>)")
    ids, mask = _left_align(input_ids, attention_mask)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions, positions[:, -1:] + 1


@torch.inference_mode()
def constrained_beam_search(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    trie: SIDTrie,
    beam_size: int,
    top_k: int,
) -> BeamSearchOutput:
    """Top-``top_k`` valid items per user, sorted by cumulative log-prob of their SID tokens.

    ``input_ids``/``attention_mask``: ``[users, T]`` prompts (either padding side) in the model's
    token ids. ``trie`` must emit the same ids (``SIDTrie.from_vocabulary(vocab, token_map)``).
    The last level ranks all ``beam_size x K`` expansions, so ``top_k`` may exceed ``beam_size``.
    The model must use "sdpa" or "eager" attention (custom 4D masks).
    """
    if beam_size < 1 or top_k < 1:
        raise ValueError("beam_size and top_k must be >= 1")
    device = input_ids.device
    if trie.device != device:
        trie = trie.to(device)
    users, beams, depth = input_ids.shape[0], beam_size, trie.depth
    ids, mask, positions, next_position = prepare_prompts(model, input_ids, attention_mask)
    prompt_len = ids.shape[1]

    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = out.cache
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [users, V]

        # Level 0: every user starts from the trie root with one live beam.
        root = torch.zeros(1, dtype=torch.long, device=device)
        cand = logp[:, trie.level_token_ids[0]].masked_fill(trie.children(0, root) < 0, -torch.inf)  # [users, K0]
        if depth == 1:
            return _finish(trie, cand, torch.zeros(users, 1, dtype=torch.long, device=device), None, 0, top_k)
        take = min(beams, trie.codebook_sizes[0])
        scores, codes = cand.topk(take, dim=1)  # [users, take]
        if take < beams:  # fewer codes than beams: pad with dead beams
            scores = torch.cat([scores, scores.new_full((users, beams - take), -torch.inf)], 1)
            codes = torch.cat([codes, codes.new_zeros((users, beams - take))], 1)
        nodes = trie.step(0, torch.zeros_like(codes), codes).masked_fill(scores.isinf(), -1)
        history = codes.unsqueeze(-1)  # [users, beams, levels so far] codes of each beam

        dtype = model.get_input_embeddings().weight.dtype
        blocked = torch.finfo(dtype).min
        prompt_bias = torch.zeros(users, 1, 1, prompt_len, dtype=dtype, device=device)
        prompt_bias = prompt_bias.masked_fill((mask == 0)[:, None, None, :], blocked).expand(-1, 1, beams, -1)
        beam_range = torch.arange(beams, device=device)
        ancestors = torch.zeros(users, beams, 0, dtype=torch.long, device=device)  # slots after the prompt

        for level in range(1, depth):
            # This step appends each beam's level-(level-1) token at slot (level-1)*beams + beam.
            own = ((level - 1) * beams + beam_range).expand(users, beams).unsqueeze(-1)
            visible = torch.zeros(users, beams, level * beams, dtype=torch.bool, device=device)
            visible.scatter_(2, torch.cat([ancestors, own], 2), True)
            tree_bias = torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill(~visible, blocked)
            out = model(
                input_ids=trie.level_token_ids[level - 1][history[:, :, -1]],
                attention_mask=torch.cat([prompt_bias, tree_bias.unsqueeze(1)], dim=-1),
                position_ids=(next_position + level - 1).expand(users, beams),
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            logp = torch.log_softmax(out.logits.float(), dim=-1)  # [users, beams, V]
            k = trie.codebook_sizes[level]
            cand = logp[..., trie.level_token_ids[level]] + scores.unsqueeze(-1)  # [users, beams, K]
            cand = cand.masked_fill(trie.children(level, nodes) < 0, -torch.inf)  # dead beams: all -inf
            if level == depth - 1:
                return _finish(trie, cand.view(users, beams * k), nodes, history, level, top_k)
            scores, flat = cand.view(users, beams * k).topk(beams, dim=1)
            origin, codes = flat // k, flat % k
            nodes = trie.step(level, nodes.gather(1, origin), codes).masked_fill(scores.isinf(), -1)
            lineage = torch.cat([ancestors, own], 2)  # the parent's ancestors + the parent itself
            ancestors = lineage.gather(1, origin.unsqueeze(-1).expand(-1, -1, level))
            history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand_as(history)), codes.unsqueeze(-1)], 2)
        raise AssertionError("unreachable")
    finally:
        model.train(was_training)


def _finish(
    trie: SIDTrie,
    cand: torch.Tensor,  # [users, beams * K] cumulative scores of the last level's expansions
    nodes: torch.Tensor,  # [users, beams] trie nodes before the last level
    history: torch.Tensor | None,  # [users, beams, depth - 1] codes so far
    level: int,
    top_k: int,
) -> BeamSearchOutput:
    users, width = cand.shape
    k = trie.codebook_sizes[level]
    take = min(top_k, width)
    scores, flat = cand.topk(take, dim=1)
    origin, codes = flat // k, flat % k
    leaves = trie.step(level, nodes.gather(1, origin), codes)
    valid = ~scores.isinf() & (leaves >= 0)
    items = trie.leaf_items(leaves).masked_fill(~valid, -1)
    scores = scores.masked_fill(~valid, -torch.inf)
    full = codes.unsqueeze(-1)
    if history is not None:
        full = torch.cat([history.gather(1, origin.unsqueeze(-1).expand(-1, -1, history.shape[2])), full], 2)
    full = full.masked_fill(~valid.unsqueeze(-1), -1)
    if take < top_k:  # more requested than candidates exist at all
        pad = top_k - take
        items = torch.cat([items, items.new_full((users, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((users, pad), -torch.inf)], 1)
        full = torch.cat([full, full.new_full((users, pad, full.shape[2]), -1)], 1)
    return BeamSearchOutput(items=items, scores=scores, codes=full)
