"""RQ-KMeans baseline: residual k-means on the (concatenated) input embeddings, no gradient
training. Level l clusters the residuals left by levels < l; codes are the nearest centroids."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from simcit.tokenizer.batch import ViewBatch
from simcit.tokenizer.config import RQKMeansConfig
from simcit.tokenizer.outputs import LossOutput
from simcit.tokenizer.residual_quantizer import ResidualQuantizer


class RQKMeansTokenizer(nn.Module):
    kind = "rqkmeans"
    requires_training = False

    def __init__(self, config: RQKMeansConfig) -> None:
        super().__init__()
        self.config = config
        self.input_views = {name: config.views[name] for name in config.used_views}
        self.quantizer = ResidualQuantizer(config.levels, config.codebook_size, sum(self.input_views.values()))
        self.quantizer.requires_grad_(False)
        self.register_buffer("fitted", torch.tensor(False))

    def _matrix(self, data: ViewBatch | Tensor | np.ndarray) -> Tensor:
        if isinstance(data, ViewBatch):
            return data.concatenated(self.input_views)[0]
        x = torch.as_tensor(data, dtype=torch.float32)
        if x.dim() != 2 or x.shape[1] != self.quantizer.dim:
            raise ValueError(f"expected [N, {self.quantizer.dim}] input, got {tuple(x.shape)}")
        return x

    @torch.no_grad()
    def fit(self, data: ViewBatch | Tensor | np.ndarray) -> "RQKMeansTokenizer":
        """Fit the L codebooks on a sample (>= K rows): a ViewBatch or a [N, sum d] matrix."""
        self.quantizer.init_from_kmeans(self._matrix(data), self.config.iters, self.config.seed)
        self.fitted.fill_(True)
        return self

    def init_codebooks(self, batch: ViewBatch) -> None:
        self.fit(batch)

    def param_groups(self, lr: float, weight_decay: float = 0.0) -> list[dict]:
        return []  # nothing is trained by gradient

    @torch.no_grad()
    def codes(self, data: ViewBatch | Tensor | np.ndarray) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError("RQKMeansTokenizer.codes() before fit()")
        return self.quantizer.codes(self._matrix(data))

    @torch.no_grad()
    def validation_loss(self, batch: ViewBatch) -> LossOutput:
        """Mean squared quantization error per item (what k-means minimises)."""
        err = self.quantizer(self._matrix(batch), soft=False).residual.pow(2).sum(-1).mean()
        return LossOutput(err, {"loss": float(err), "quantization_error": float(err)})

    def forward(self, batch: ViewBatch) -> LossOutput:
        raise NotImplementedError("RQ-KMeans has no gradient training: call fit() on a sample")
