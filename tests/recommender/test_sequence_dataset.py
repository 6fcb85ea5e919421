import pytest
import torch
from torch.utils.data import DataLoader

from simcit.recommender import (
    IGNORE_INDEX,
    SequenceCollator,
    SequenceConfig,
    SIDSequenceDataset,
    SIDVocabulary,
    encode_prompt,
)


@pytest.fixture
def vocab():
    return SIDVocabulary([[i % 4, i // 4, 0] for i in range(12)], context_tokens=["<hour_8>", "<hour_9>"])


def test_window_flattening_and_labels(vocab):
    histories = [list(range(10)), [3, 4]]
    ds = SIDSequenceDataset(histories, vocab, SequenceConfig(max_items=4))
    assert len(ds) == 2
    ex = ds[0]
    expected = [vocab.bos_id] + [t for item in [6, 7, 8, 9] for t in vocab.item_token_ids(item)]
    assert ex["input_ids"].tolist() == expected  # only the last 4 items, in order
    assert ex["labels"][0] == IGNORE_INDEX  # <bos> is never a target
    assert ex["labels"][1:].equal(ex["input_ids"][1:])


def test_collate_pads_and_masks(vocab):
    ds = SIDSequenceDataset([list(range(10)), [3, 4]], vocab, SequenceConfig(max_items=4))
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=SequenceCollator(vocab.pad_id))))
    assert batch["input_ids"].shape == (2, 1 + 4 * 3)
    short = 1 + 2 * 3
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (13 - short)
    assert (batch["input_ids"][1, short:] == vocab.pad_id).all()
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["labels"][1, 1:short] != IGNORE_INDEX).all()
    assert batch["attention_mask"][0].all()


def test_context_tokens_are_inputs_not_targets(vocab):
    ctx = [[["<hour_8>"], ["<hour_9>"], ["<hour_8>"]]]
    ds = SIDSequenceDataset([[0, 1, 2]], vocab, SequenceConfig(max_items=2, use_context=True), contexts=ctx)
    ex = ds[0]
    h8, h9 = vocab.token_id("<hour_8>"), vocab.token_id("<hour_9>")
    assert ex["input_ids"].tolist() == [vocab.bos_id, h9, *vocab.item_token_ids(1), h8, *vocab.item_token_ids(2)]
    assert ex["labels"].tolist() == [IGNORE_INDEX, IGNORE_INDEX, *vocab.item_token_ids(1), IGNORE_INDEX,
                                     *vocab.item_token_ids(2)]
    # the switch off: same data, no context tokens
    plain = SIDSequenceDataset([[0, 1, 2]], vocab, SequenceConfig(max_items=2), contexts=ctx)[0]
    assert h8 not in plain["input_ids"].tolist()
    prompt = encode_prompt([0, 1, 2], vocab, SequenceConfig(max_items=1, use_context=True),
                           contexts=ctx[0], next_context=["<hour_9>"])
    assert prompt.tolist() == [vocab.bos_id, h8, *vocab.item_token_ids(2), h9]
    with pytest.raises(ValueError):
        SIDSequenceDataset([[0]], vocab, SequenceConfig(use_context=True))


def test_sliding_windows_and_token_map(vocab):
    cfg = SequenceConfig(max_items=4, windows="sliding", stride=3, min_items=2)
    ds = SIDSequenceDataset([list(range(10)), [5], []], vocab, cfg)
    windows = [ex["input_ids"][1::3].tolist() for ex in ds]  # first token of each item
    first = vocab.item_token_table[:, 0]
    assert windows == [first[list(r)].tolist() for r in (range(6, 10), range(3, 7), range(0, 4))]
    mapped = SIDSequenceDataset([[1, 2]], vocab, token_map=torch.arange(vocab.vocab_size) + 50)[0]
    plain = SIDSequenceDataset([[1, 2]], vocab)[0]
    assert mapped["input_ids"].equal(plain["input_ids"] + 50)
    assert mapped["labels"][0] == IGNORE_INDEX and mapped["labels"][1:].equal(plain["labels"][1:] + 50)
