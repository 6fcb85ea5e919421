import numpy as np
import pytest
import torch

from simcit.recommender import (
    RecommenderConfig,
    SIDTrie,
    SIDVocabulary,
    build_model,
    collate_prompts,
    constrained_beam_search,
    encode_prompt,
)
from tests.recommender.recommender_testing import TINY, brute_force_scores, random_sids, tiny_model


def _case(seed: int, arch: str, n_items: int, sizes: tuple[int, ...]):
    rng = np.random.default_rng(seed)
    vocab = SIDVocabulary(random_sids(rng, n_items, sizes))
    model = tiny_model(vocab, arch=arch, seed=seed)
    histories = [rng.integers(0, n_items, size=int(n)).tolist() for n in rng.integers(0, 7, size=4)]
    prompts = [encode_prompt(h, vocab) for h in histories]
    return vocab, model, prompts


def _pad_left(batch, pad_id):
    lengths = batch["attention_mask"].sum(1)
    ids = torch.full_like(batch["input_ids"], pad_id)
    mask = torch.zeros_like(batch["attention_mask"])
    width = ids.shape[1]
    for row, n in enumerate(lengths.tolist()):
        ids[row, width - n :] = batch["input_ids"][row, :n]
        mask[row, width - n :] = 1
    return ids, mask


@pytest.mark.parametrize(
    "seed,arch,n_items,sizes",
    [(0, "qwen2", 40, (4, 4, 3)), (1, "llama", 55, (5, 3, 4)), (2, "qwen2", 30, (3, 4)), (3, "llama", 60, (6, 5, 4))],
)
def test_wide_beam_equals_exhaustive_ranking(seed, arch, n_items, sizes):
    vocab, model, prompts = _case(seed, arch, n_items, sizes)
    trie = SIDTrie.from_vocabulary(vocab)
    top_k = 10
    batch = collate_prompts(prompts, vocab.pad_id)  # right padding, different history lengths
    out = constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie,
                                  beam_size=n_items, top_k=top_k)
    for user, prompt in enumerate(prompts):
        ref = brute_force_scores(model, prompt, vocab.item_token_table)
        ref_scores, ref_items = ref.topk(top_k)
        assert out.items[user].tolist() == ref_items.tolist()
        torch.testing.assert_close(out.scores[user], ref_scores, atol=1e-4, rtol=0)
        assert out.codes[user].tolist() == vocab.codes[ref_items.numpy()].tolist()
    # left padding gives the same answer
    ids, mask = _pad_left(batch, vocab.pad_id)
    left = constrained_beam_search(model, ids, mask, trie, beam_size=n_items, top_k=top_k)
    assert left.items.equal(out.items)
    torch.testing.assert_close(left.scores, out.scores, atol=1e-4, rtol=0)


@pytest.mark.parametrize("beam_size", [1, 3, 7])
def test_narrow_beam_returns_valid_unique_items(beam_size):
    vocab, model, prompts = _case(5, "qwen2", 60, (4, 4, 4))
    trie = SIDTrie.from_vocabulary(vocab, dense_limit=0)  # sparse storage path
    batch = collate_prompts(prompts, vocab.pad_id)
    top_k = beam_size
    out = constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, beam_size, top_k)
    assert out.items.shape == (len(prompts), top_k)
    for user, prompt in enumerate(prompts):
        items = out.items[user].tolist()
        assert all(0 <= i < vocab.num_items for i in items)
        assert len(set(items)) == len(items)
        assert (out.scores[user][:-1] >= out.scores[user][1:]).all()  # sorted
        ref = brute_force_scores(model, prompt, vocab.item_token_table)
        torch.testing.assert_close(out.scores[user], ref[out.items[user]], atol=1e-4, rtol=0)
        assert out.codes[user].tolist() == vocab.codes[items].tolist()


def test_fewer_valid_items_than_beams_pads_with_minus_one():
    vocab = SIDVocabulary([[0, 0, 0], [0, 1, 0], [2, 1, 0], [2, 1, 1], [1, 0, 0]], codebook_sizes=(4, 4, 2))
    model = tiny_model(vocab, seed=4)
    prompts = [encode_prompt(h, vocab) for h in ([0, 1], [4], [])]
    batch = collate_prompts(prompts, vocab.pad_id)
    trie = SIDTrie.from_vocabulary(vocab)
    out = constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, beam_size=8, top_k=8)
    assert (out.items[:, 5:] == -1).all() and torch.isinf(out.scores[:, 5:]).all()
    assert (out.codes[:, 5:] == -1).all()
    for user, prompt in enumerate(prompts):
        assert sorted(out.items[user, :5].tolist()) == [0, 1, 2, 3, 4]
        ref = brute_force_scores(model, prompt, vocab.item_token_table)
        torch.testing.assert_close(out.scores[user, :5], ref.sort(descending=True).values, atol=1e-4, rtol=0)
    # top_k larger than the beam: the last level ranks every beam x code expansion
    wide = constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, beam_size=2, top_k=4)
    assert (wide.items[:, :2] >= 0).all()
    assert all(len(set(r.tolist()) - {-1}) == (r >= 0).sum() for r in wide.items)


def test_restores_training_mode_and_rejects_empty_prompts():
    vocab = SIDVocabulary([[0, 0], [1, 0]])
    model = tiny_model(vocab).train()
    trie = SIDTrie.from_vocabulary(vocab)
    ids = torch.tensor([[vocab.bos_id]])
    constrained_beam_search(model, ids, None, trie, beam_size=2, top_k=2)
    assert model.training
    with pytest.raises(ValueError):
        constrained_beam_search(model, ids, torch.zeros_like(ids), trie, beam_size=2, top_k=2)


def test_eager_attention_gives_the_same_ranking():
    """The tree mask is additive, so it works with both mask-taking attention implementations."""
    vocab, _, prompts = _case(6, "qwen2", 40, (4, 4, 3))
    batch = collate_prompts(prompts, vocab.pad_id)
    trie = SIDTrie.from_vocabulary(vocab)
    results = []
    for attn in ("sdpa", "eager"):
        torch.manual_seed(6)
        model = build_model(RecommenderConfig(**{**TINY.to_dict(), "attn_implementation": attn}), vocab).eval()
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(25.0)  # as tiny_model: no near-ties
        assert model.config._attn_implementation == attn
        results.append(constrained_beam_search(model, batch["input_ids"], batch["attention_mask"], trie, 40, 8))
    assert results[0].items.equal(results[1].items)
    torch.testing.assert_close(results[0].scores, results[1].scores, atol=1e-4, rtol=0)
