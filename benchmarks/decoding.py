"""Benchmark: our tensorised constrained beam search vs transformers' generate with a Python trie.

Same model, same prompts, same beam width; both rank SIDs by the sum of their tokens' log-probs
(generate with length_penalty=0), so they should return the same top items. Prints a table.

    .venv/bin/python benchmarks/decoding.py            # defaults: 5,000 SIDs, 64 users, beam 20
    .venv/bin/python benchmarks/decoding.py --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from simcit.recommender import (
    RecommenderConfig,
    SIDTrie,
    SIDVocabulary,
    build_model,
    collate_prompts,
    constrained_beam_search,
    encode_prompt,
    num_parameters,
)
from simcit.sids.disambiguation import append_disambiguation


def random_sids(rng: np.random.Generator, n: int, levels: int, k: int) -> np.ndarray:
    """``n`` random L-level SIDs (K codes a level) + TIGER-style disambiguation code."""
    return append_disambiguation(rng.integers(0, k, size=(n, levels)))


def python_trie(vocab: SIDVocabulary) -> dict[tuple[int, ...], list[int]]:
    """The usual baseline: prefix tuple of token ids -> allowed next token ids."""
    children: dict[tuple[int, ...], set[int]] = {}
    for row in vocab.item_token_table.tolist():
        for depth in range(len(row)):
            children.setdefault(tuple(row[:depth]), set()).add(row[depth])
    return {prefix: sorted(nxt) for prefix, nxt in children.items()}


def hf_generate(model, batch, vocab, trie_dict, beams, top_k):
    prompt_len = batch["input_ids"].shape[1]
    eos = [vocab.eos_id]

    def allowed(_batch_id: int, sent: torch.Tensor) -> list[int]:
        return trie_dict.get(tuple(sent[prompt_len:].tolist()), eos)

    out = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        num_beams=beams,
        num_return_sequences=top_k,
        max_new_tokens=vocab.sid_length,
        do_sample=False,
        length_penalty=0.0,  # rank by the plain sum of log-probs, as we do
        early_stopping=True,
        prefix_allowed_tokens_fn=allowed,
        pad_token_id=vocab.pad_id,
        eos_token_id=vocab.eos_id,
        return_dict_in_generate=True,
        output_scores=True,
    )
    users = batch["input_ids"].shape[0]
    seqs = out.sequences[:, prompt_len:].reshape(users, top_k, -1).cpu()
    scores = out.sequences_scores.reshape(users, top_k).float().cpu()
    items = [[vocab.item_index(s.tolist()) if s.numel() == vocab.sid_length else None for s in row] for row in seqs]
    return items, scores


def timed(fn, repeats: int, device: str):
    """(best wall seconds, median wall seconds, median process CPU seconds, last result).

    The best of several runs is the usual estimate on a shared machine; CPU seconds (all threads)
    are less sensitive to other processes competing for the cores."""
    fn()  # warm-up (allocator, lazy init)
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: reproducible on a shared machine; both decoders get the same)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    vocab = SIDVocabulary(random_sids(rng, args.items, args.levels, args.codebook))
    cfg = RecommenderConfig(hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                            intermediate_size=2 * args.hidden, max_position_embeddings=512)
    model = build_model(cfg, vocab)
    with torch.no_grad():  # random init is near-uniform; sharpen so rankings are not 1e-7 ties
        model.get_input_embeddings().weight.mul_(20.0)
    model = model.to(args.device).eval()
    histories = rng.integers(0, args.items, size=(args.users, args.history)).tolist()
    batch = collate_prompts([encode_prompt(h, vocab) for h in histories], vocab.pad_id)
    batch = {k: v.to(args.device) for k, v in batch.items()}
    trie = SIDTrie.from_vocabulary(vocab).to(args.device)
    trie_dict = python_trie(vocab)

    print(f"model {cfg.arch} {args.layers}x{args.hidden}, {num_parameters(model) / 1e6:.2f}M params, "
          f"vocab {vocab.vocab_size}; {vocab.num_items} SIDs of length {vocab.sid_length}; "
          f"{args.users} users x {args.history} items (prompt {batch['input_ids'].shape[1]} tokens); "
          f"beam {args.beam}, top-{args.top_k}; device {args.device}, torch threads {torch.get_num_threads()}")

    best_ours, med_ours, cpu_ours, ours = timed(lambda: constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie,
                                                         args.beam, args.top_k), args.repeats, args.device)
    with torch.inference_mode():
        best_hf, med_hf, cpu_hf, (hf_items, hf_scores) = timed(lambda: hf_generate(model, batch, vocab, trie_dict, args.beam, args.top_k),
                                            args.repeats, args.device)

    ours_items, ours_scores = ours.items.cpu().tolist(), ours.scores.cpu()
    same_list = sum(o == h for o, h in zip(ours_items, hf_items))
    same_top1 = sum(o[0] == h[0] for o, h in zip(ours_items, hf_items))
    overlap = np.mean([len(set(o) & set(h)) / args.top_k for o, h in zip(ours_items, hf_items)])
    invalid_hf = sum(i is None for row in hf_items for i in row)
    gap = (ours_scores[:, 0] - hf_scores[:, 0]).abs().max().item()

    rows = [("transformers generate + prefix_allowed_tokens_fn", best_hf, med_hf, cpu_hf),
            ("constrained_beam_search (ours)", best_ours, med_ours, cpu_ours)]
    print(f"\n{'decoder':<50} {'best s':>8} {'median s':>9} {'users/s':>8} {'speed-up':>9} {'CPU s':>7} {'CPU x':>6}")
    for name, best, med, cpu in rows:
        print(f"{name:<50} {best:>8.3f} {med:>9.3f} {args.users / best:>8.1f} {best_hf / best:>8.1f}x "
              f"{cpu:>7.2f} {cpu_hf / cpu:>5.1f}x")
    print("(users/s and speed-up from the best of the repeats; CPU s = process CPU time per call, all threads)")
    print(f"\nagreement over {args.users} users: identical top-{args.top_k} lists {same_list}/{args.users}, "
          f"same top-1 {same_top1}/{args.users}, mean overlap@{args.top_k} {overlap:.3f}, "
          f"max |top-1 score diff| {gap:.2e}, invalid SIDs from generate {invalid_hf}")


if __name__ == "__main__":
    main()
