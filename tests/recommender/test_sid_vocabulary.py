import numpy as np
import pytest

from simcit.recommender import SIDVocabulary, parse_sid_string, sid_string
from tests.recommender.recommender_testing import random_sids


def test_token_layout_and_sid_string():
    vocab = SIDVocabulary([[12, 3, 200, 0], [12, 3, 200, 1], [0, 0, 0, 0]], codebook_sizes=(256, 256, 256, 4))
    assert vocab.tokens[:3] == ["<pad>", "<bos>", "<eos>"]
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2)
    assert vocab.vocab_size == 3 + 3 * 256 + 4
    assert vocab.level_offsets == (3, 259, 515, 771)
    assert vocab.sid_string((12, 3, 200, 0)) == "<a_12><b_3><c_200><d_0>"
    assert vocab.item_sid_string(1) == "<a_12><b_3><c_200><d_1>"
    assert [vocab.token(t) for t in vocab.item_token_ids(0)] == ["<a_12>", "<b_3>", "<c_200>", "<d_0>"]
    assert vocab.token_id("<c_200>") == 515 + 200
    assert vocab.level_token_ids(3).tolist() == [771, 772, 773, 774]


def test_item_round_trip_for_every_item(rng):
    codes = random_sids(rng, 300, (8, 8, 4))
    vocab = SIDVocabulary(codes)
    table = vocab.item_token_table
    assert table.shape == (300, 4)
    for item in range(vocab.num_items):
        tokens = vocab.item_token_ids(item)
        assert tokens == table[item].tolist()
        assert vocab.item_index(tokens) == item
        assert vocab.codes_for_tokens(tokens) == tuple(codes[item])
        assert parse_sid_string(vocab.item_sid_string(item)) == tuple(codes[item])
    missing = next(c for c in np.ndindex(8, 8, 4, 1) if vocab.item_for_codes(c) is None)
    assert vocab.item_index(vocab.sid_token_ids(missing)) is None


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="share a SID"):
        SIDVocabulary([[1, 2, 0], [1, 2, 0]])
    with pytest.raises(ValueError, match="codebook size"):
        SIDVocabulary([[1, 9, 0]], codebook_sizes=(4, 4, 1))
    vocab = SIDVocabulary([[1, 2, 0]], codebook_sizes=(4, 4, 1))
    with pytest.raises(ValueError):
        vocab.codes_for_tokens([vocab.token_id("<b_2>"), vocab.token_id("<a_1>"), vocab.token_id("<c_0>")])
    with pytest.raises(KeyError):
        vocab.token_id("<hour_3>")
    with pytest.raises(ValueError):
        parse_sid_string("<a_1><c_2>")
    assert sid_string([1, 2]) == "<a_1><b_2>"


def test_context_tokens_are_appended_and_stable():
    vocab = SIDVocabulary([[0, 1, 0], [1, 0, 0]])
    before = vocab.tokens
    ids = vocab.add_context_tokens(["<hour_17>", "<region_nyc>"])
    assert ids == [len(before), len(before) + 1]
    assert vocab.tokens[: len(before)] == before  # SID token ids unchanged
    assert vocab.add_context_tokens(["<hour_17>"]) == [ids[0]]  # idempotent
    with pytest.raises(ValueError):
        vocab.add_context_tokens(["<a_0>"])


def test_save_load_round_trip(tmp_path, rng):
    codes = random_sids(rng, 100, (5, 5, 5))
    vocab = SIDVocabulary(
        codes,
        codebook_sizes=(8, 8, 8, 4),
        item_ids=[f"poi-{i}" for i in range(100)],
        tokenizer_version="simcit-v3",
        table_version=7,
        context_tokens=["<hour_0>", "<hour_1>"],
    )
    loaded = SIDVocabulary.load(vocab.save(tmp_path / "sub" / "vocab.json"))
    assert loaded.tokens == vocab.tokens
    assert np.array_equal(loaded.codes, codes)
    assert loaded.codebook_sizes == (8, 8, 8, 4)
    assert (loaded.tokenizer_version, loaded.table_version) == ("simcit-v3", 7)
    assert loaded.item_ids == vocab.item_ids
    assert loaded.context_tokens == ["<hour_0>", "<hour_1>"]
    assert loaded.item_token_table.equal(vocab.item_token_table)
