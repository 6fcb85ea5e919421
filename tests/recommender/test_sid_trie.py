import itertools

import pytest
import torch

from simcit.recommender import SIDTrie, SIDVocabulary
from tests.recommender.recommender_testing import random_sids


@pytest.mark.parametrize("dense_limit", [1 << 24, 0])  # dense tables, then sorted-key storage
def test_trie_accepts_exactly_the_valid_prefixes(rng, dense_limit):
    sizes = (4, 3, 3)
    codes = random_sids(rng, 40, sizes)
    trie = SIDTrie.from_codes(codes, dense_limit=dense_limit)
    depth_sizes = [*sizes, int(codes[:, 3].max()) + 1]
    for length in range(1, 5):
        valid = {tuple(row[:length]) for row in codes.tolist()}
        assert trie.num_nodes[length] == len(valid)
        every = list(itertools.product(*[range(k + 1) for k in depth_sizes[:length]]))  # incl. out-of-range codes
        nodes = trie.walk(torch.tensor(every))
        assert ((nodes >= 0) == torch.tensor([p in valid for p in every])).all()
        assert trie.is_valid_prefix(codes[0, :length])
    # every item's full SID leads back to the item
    assert trie.item_of(torch.from_numpy(codes)).tolist() == list(range(len(codes)))


def test_dense_and_sparse_storage_agree(rng):
    codes = random_sids(rng, 60, (5, 4, 3))
    dense, sparse = SIDTrie.from_codes(codes), SIDTrie.from_codes(codes, dense_limit=0)
    assert "sparse" in repr(sparse) and "sparse" not in repr(dense)
    for level in range(dense.depth):
        assert dense.transition_table(level).equal(sparse.transition_table(level))
    nodes = torch.tensor([[0, -1], [-1, 0]])  # dead beams (-1) have no children
    assert (dense.children(0, nodes)[nodes < 0] == -1).all()
    assert dense.children(0, nodes).equal(sparse.children(0, nodes))


def test_transition_table_matches_python_trie(rng):
    codes = random_sids(rng, 50, (4, 4, 2))
    trie = SIDTrie.from_codes(codes)
    # reference: dict of prefix -> set of next codes
    children: dict[tuple, set] = {}
    for row in codes.tolist():
        for level in range(4):
            children.setdefault(tuple(row[:level]), set()).add(row[level])
    for prefix, nxt in children.items():
        node = int(trie.walk(torch.tensor(prefix, dtype=torch.long).reshape(len(prefix))))
        allowed = (trie.transition_table(len(prefix))[node] >= 0).nonzero().flatten().tolist()
        assert allowed == sorted(nxt)


def test_rejects_duplicates_and_maps_tokens(rng):
    with pytest.raises(ValueError, match="duplicate"):
        SIDTrie.from_codes([[0, 1, 0], [0, 1, 0]])
    codes = random_sids(rng, 30, (4, 4, 4))
    vocab = SIDVocabulary(codes, codebook_sizes=(4, 4, 4, int(codes[:, 3].max()) + 1))
    trie = SIDTrie.from_vocabulary(vocab)
    for level in range(vocab.sid_length):
        assert trie.level_token_ids[level].equal(vocab.level_token_ids(level))
    shifted = SIDTrie.from_vocabulary(vocab, token_map=torch.arange(vocab.vocab_size) + 1000)
    assert shifted.level_token_ids[1].equal(vocab.level_token_ids(1) + 1000)
    assert trie.leaf_item.sort().values.tolist() == list(range(30))
