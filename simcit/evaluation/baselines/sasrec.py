"""SASRec (Kang & McAuley, 2018): ID-based causal self-attention over the item history.

Trained with full-softmax cross-entropy over all items (no sampled negatives, so training and
full-ranking evaluation agree) on every transition of every training part; early stopping on
validation Recall@10 (configurable). Output embeddings are tied to the input item embeddings.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from simcit.evaluation.sequences import Examples, examples
from simcit.evaluation.vocab import ItemVocab

PAD = 0  # item column j is token j + 1


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 200
    batch_size: int = 128
    patience: int = 5                 # epochs without a better valid metric before stopping
    early_stop_metric: str = "recall@10"
    eval_every: int = 1
    max_train_seconds: Optional[float] = None  # wall-clock budget; the best epoch so far is kept
    eval_batch_size: int = 1024
    num_threads: Optional[int] = None  # sets torch threads (process-wide); 1 is fastest on busy CPUs
    device: str = "cpu"
    seed: int = 0
    verbose: bool = False             # print one line per epoch

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError("hidden must be divisible by heads")
        if self.max_len < 1 or self.blocks < 1:
            raise ValueError("max_len and blocks must be >= 1")


@dataclass
class EpochLog:
    epoch: int
    loss: float
    valid_metric: Optional[float]
    seconds: float


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, c: SASRecConfig):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, c.hidden, padding_idx=PAD)
        self.pos = nn.Embedding(c.max_len, c.hidden)
        self.drop = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            c.hidden, c.heads, dim_feedforward=c.hidden, dropout=c.dropout,
            activation="relu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, c.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.hidden)
        self.scale = c.hidden ** 0.5
        nn.init.normal_(self.item.weight, std=c.hidden ** -0.5)
        with torch.no_grad():
            self.item.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, T, H]``; sequences are right-padded so that, with the causal mask,
        no real position ever attends to padding."""
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        x = self.drop(self.item(tokens) * self.scale + self.pos(pos)[None])
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tokens.device)
        return self.norm(self.encoder(x, mask=mask, is_causal=True))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.item.weight[1:].T  # scores of real items only


def training_windows(encoded: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each training part into windows of ``max_len + 1`` tokens, aligned on its end, that
    overlap by one token: every transition is a training target exactly once."""
    out = []
    for s in encoded:
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            out.append(s[start:end] + 1)  # +1: token ids
            end = start + 1
    return out


def _pad_right(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Random batches of windows of similar length (little padding), in random order."""
    # Shuffle first so equal lengths land in different batches each epoch, then sort stably.
    perm = rng.permutation(len(lengths))
    order = perm[np.argsort(lengths[perm], kind="stable")]
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    for i in rng.permutation(len(batches)):
        yield batches[i]


class SASRec:
    def __init__(self, config: SASRecConfig | None = None):
        self.config = config or SASRecConfig()
        self.item_ids: list[str] = []
        self.log: list[EpochLog] = []
        self.best_epoch: Optional[int] = None
        self.best_valid_metric: Optional[float] = None

    def fit(
        self,
        train_sequences: Sequence[Sequence[str]],
        items: Sequence[str],
        valid: pd.DataFrame | Examples | None = None,
    ) -> "SASRec":
        from simcit.evaluation.ranking import evaluate  # local: ranking does not need torch

        c = self.config
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        self.vocab = ItemVocab(items)
        self.item_ids = self.vocab.ids
        self.device = torch.device(c.device)
        self.net = SASRecNet(len(self.vocab), c).to(self.device)
        windows = training_windows(self.vocab.encode_many(train_sequences), c.max_len)
        if not windows:
            raise ValueError("no training part has two items: nothing to learn")
        lengths = np.array([len(w) for w in windows])
        valid_ex = None
        if valid is not None:
            valid_ex = valid if isinstance(valid, Examples) else examples(valid, "valid")
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        best_state, best, stale = None, float("-inf"), 0
        t0 = time.monotonic()
        self.log = []
        for epoch in range(1, c.epochs + 1):
            self.net.train()
            te = time.monotonic()
            total, n_tok = 0.0, 0
            for idx in _length_bucketed_batches(lengths, c.batch_size, rng):
                batch = [windows[i] for i in idx]
                length = max(len(w) for w in batch)
                tok = torch.from_numpy(_pad_right(batch, length)).to(self.device)
                inp, tgt = tok[:, :-1], tok[:, 1:] - 1  # targets as item columns; pad -> -1
                real = tgt >= 0
                # Full-softmax logits only at real positions: padding would be most of the cost.
                logits = self.net.logits(self.net(inp)[real])
                loss = loss_fn(logits, tgt[real])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n = int(real.sum())
                total += float(loss.detach()) * n
                n_tok += n
            rec = None
            if valid_ex is not None and epoch % c.eval_every == 0:
                k = int(c.early_stop_metric.split("@")[1])
                res = evaluate(self, valid_ex, "valid", ks=(k,), batch_size=c.eval_batch_size)
                rec = res.metrics[c.early_stop_metric]
            self.log.append(EpochLog(epoch, total / max(n_tok, 1), rec, time.monotonic() - te))
            if c.verbose:
                print(f"sasrec epoch {epoch}: {self.log[-1]}", flush=True)
            if rec is not None:
                if rec > best:
                    best, stale, self.best_epoch = rec, 0, epoch
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    stale += 1
                    if stale >= c.patience:
                        break
            if c.max_train_seconds is not None and time.monotonic() - t0 > c.max_train_seconds:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
            self.best_valid_metric = best
        self.net.eval()
        return self

    @torch.no_grad()
    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        c = self.config
        self.net.eval()
        encoded = [h[-c.max_len :] + 1 for h in self.vocab.encode_many(histories)]
        # An empty history becomes one padding token: the model then scores from position only.
        lengths = np.array([max(len(h), 1) for h in encoded])
        out = np.empty((len(encoded), len(self.vocab)), dtype=np.float32)
        for b in range(0, len(encoded), c.eval_batch_size):
            chunk = encoded[b : b + c.eval_batch_size]
            ln = lengths[b : b + c.eval_batch_size]
            tok = torch.from_numpy(_pad_right(chunk, int(ln.max()))).to(self.device)
            hidden = self.net(tok)
            last = hidden[torch.arange(len(chunk)), torch.from_numpy(ln - 1).to(self.device)]
            out[b : b + len(chunk)] = self.net.logits(last).float().cpu().numpy()
        return out
