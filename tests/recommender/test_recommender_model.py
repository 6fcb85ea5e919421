import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from simcit.recommender import (
    RecommenderConfig,
    SequenceCollator,
    SIDSequenceDataset,
    SIDTrie,
    SIDVocabulary,
    build_model,
    collate_prompts,
    constrained_beam_search,
    encode_prompt,
    load_base_model,
    num_parameters,
    save_recommender,
)
from tests.recommender.recommender_testing import brute_force_scores, random_sids

BASE_WORDS = ["<unk>", "<|endoftext|>", "hello", "world", "the", "cafe", "near", "park"]


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        RecommenderConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="arch"):
        RecommenderConfig(arch="gpt2")
    with pytest.raises(ValueError, match="unknown"):
        RecommenderConfig.from_dict({"hidden": 3})
    assert RecommenderConfig.from_dict({"arch": "llama", "num_layers": 3}).num_layers == 3


@pytest.mark.parametrize("arch,cls", [("qwen2", Qwen2ForCausalLM), ("llama", LlamaForCausalLM)])
def test_default_model_is_cpu_sized(arch, cls):
    vocab = SIDVocabulary(np.array([[0, 0, 0, 0], [255, 255, 255, 3]]), codebook_sizes=(256, 256, 256, 4))
    model = build_model(RecommenderConfig(arch=arch), vocab)
    assert isinstance(model, cls)
    assert model.get_input_embeddings().num_embeddings == vocab.vocab_size
    assert 1_000_000 <= num_parameters(model) <= 3_000_000
    assert (model.config.pad_token_id, model.config.bos_token_id) == (vocab.pad_id, vocab.bos_id)


def _save_base_checkpoint(path, arch: str, with_tokenizer: bool) -> int:
    torch.manual_seed(0)
    common = dict(vocab_size=len(BASE_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model.save_pretrained(path)
    if with_tokenizer:  # a real (tiny) HF tokenizer, built offline
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(BASE_WORDS)}, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>").save_pretrained(path)
    return len(BASE_WORDS)


def _train_one_step_and_decode(base, vocab):
    model = base.model.train()
    histories = [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    ds = SIDSequenceDataset(histories, vocab, token_map=base.token_map)
    batch = SequenceCollator(base.pad_id)([ds[i] for i in range(len(ds))])
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    emb = model.get_input_embeddings().weight
    sid_rows = base.token_map[3:]
    before = emb[sid_rows].detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert not torch.allclose(emb[sid_rows], before)  # the new SID rows are trained
    model.eval()

    trie = SIDTrie.from_vocabulary(vocab, token_map=base.token_map)
    prompts = [encode_prompt(h, vocab, token_map=base.token_map) for h in histories]
    pb = collate_prompts(prompts, base.pad_id)
    out = constrained_beam_search(model, pb["input_ids"], pb["attention_mask"], trie, beam_size=vocab.num_items, top_k=5)
    mapped_table = base.token_map[vocab.item_token_table]
    for user, prompt in enumerate(prompts):
        ref_scores, ref_items = brute_force_scores(model, prompt, mapped_table).topk(5)
        assert out.items[user].tolist() == ref_items.tolist()
        torch.testing.assert_close(out.scores[user], ref_scores, atol=1e-4, rtol=0)
    return out


def test_base_model_with_tokenizer(tmp_path, rng):
    base_rows = _save_base_checkpoint(tmp_path / "base", "qwen2", with_tokenizer=True)
    vocab = SIDVocabulary(random_sids(rng, 20, (3, 3, 3)), context_tokens=["<hour_7>"])
    # mean_resizing=False: with 8 base rows in 32 dims the covariance is singular and HF would give
    # every new token the same mean vector, i.e. exact score ties that make rankings arbitrary.
    base = load_base_model(tmp_path / "base", vocab, mean_resizing=False)
    tok = base.tokenizer
    assert tok is not None
    sid_ids = base.token_map[3:]
    assert sid_ids.unique().numel() == sid_ids.numel() and (sid_ids >= base_rows).all()
    assert base.model.get_input_embeddings().num_embeddings >= int(base.token_map.max()) + 1
    assert tok.convert_ids_to_tokens(sid_ids.tolist()) == vocab.tokens[3:]
    # the tokenizer keeps a SID string as whole tokens, with exactly the mapped ids
    text = vocab.item_sid_string(4)
    assert tok(text, add_special_tokens=False)["input_ids"] == base.token_map[vocab.item_token_table[4]].tolist()
    assert tok.convert_ids_to_tokens(int(base.token_map[vocab.eos_id])) == "<|endoftext|>"  # its own eos reused
    _train_one_step_and_decode(base, vocab)

    # save the fine-tuned recommender and load it again: same mapping, nothing added twice
    save_recommender(tmp_path / "rec", base.model, vocab, base.token_map, tok)
    again = load_base_model(tmp_path / "rec", SIDVocabulary.load(tmp_path / "rec" / "sid_vocabulary.json"))
    assert again.token_map.equal(base.token_map)
    assert again.model.get_input_embeddings().num_embeddings == base.model.get_input_embeddings().num_embeddings


def test_base_model_without_tokenizer(tmp_path, rng):
    base_rows = _save_base_checkpoint(tmp_path / "base", "llama", with_tokenizer=False)
    vocab = SIDVocabulary(random_sids(rng, 20, (3, 3, 3)))
    base = load_base_model(tmp_path / "base", vocab, mean_resizing=False)
    assert base.tokenizer is None
    assert base.token_map.equal(torch.arange(vocab.vocab_size) + base_rows)  # appended after the base rows
    assert base.model.get_input_embeddings().num_embeddings == base_rows + vocab.vocab_size
    _train_one_step_and_decode(base, vocab)

    save_recommender(tmp_path / "rec", base.model, vocab, base.token_map)
    vocab.add_context_tokens(["<hour_3>"])  # registered after training: goes after every row
    again = load_base_model(tmp_path / "rec", vocab)
    assert again.token_map[:-1].equal(base.token_map)
    assert int(again.token_map[-1]) == base_rows + vocab.vocab_size - 1
    assert again.model.get_input_embeddings().num_embeddings == base_rows + vocab.vocab_size


def test_scratch_model_round_trips_through_save_recommender(tmp_path, rng):
    vocab = SIDVocabulary(random_sids(rng, 15, (3, 3, 2)), tokenizer_version="t1", table_version=2)
    torch.manual_seed(0)
    model = build_model(RecommenderConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), vocab)
    save_recommender(tmp_path / "rec", model, vocab)
    loaded_vocab = SIDVocabulary.load(tmp_path / "rec" / "sid_vocabulary.json")
    again = load_base_model(tmp_path / "rec", loaded_vocab)
    assert again.token_map.equal(torch.arange(vocab.vocab_size))  # our ids are the model's ids
    ids = vocab.item_token_table[:4].reshape(1, -1)
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
