"""Data-parallel training engines behind one interface: torch DDP or a DeepSpeed (ZeRO) engine.

Both average gradients over workers. With the contrastive loss's convention (each worker's loss
is world_size x its share of the global loss, see ``simcit.tokenizer.contrastive_loss``), the
averaged gradient is the gradient of the single-process loss on the concatenated batch.

Checkpoint files (inside a Ray Train checkpoint directory):
  ddp:        ``optimizer.pt`` (optimizer + lr scheduler), written by rank 0 (states are equal).
  deepspeed:  ``deepspeed/ckpt/...`` from ``engine.save_checkpoint``; every rank writes its ZeRO
              optimizer shard and Ray Train merges the workers' directories into one.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from simcit.tokenizer import ViewBatch
from simcit.train.lr_schedule import warmup_cosine

OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "ckpt"


@dataclass(frozen=True)
class OptimSettings:
    lr: float
    weight_decay: float
    total_steps: int
    warmup_fraction: float
    batch_size: int  # per worker
    gradient_clipping: float = 0.0  # max grad norm; 0 = off


# batch -> (loss, scalar metrics); the default is the tokenizers' ``model(batch) -> TokenizerOutput``
LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]


def tokenizer_loss(model: nn.Module, batch: ViewBatch) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(batch)
    return out.loss, out.metrics


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """The model's own groups when it defines them (the tokenizers), else the usual split:
    weight decay on matrices, none on biases, norms and embeddings."""
    if hasattr(model, "param_groups"):
        return model.param_groups(lr, weight_decay)
    decay, no_decay = [], []
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for p in {id(p): p for p in model.parameters() if p.requires_grad}.values():
        (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0}]


class DDPEngine:
    """AdamW + warm-up/cosine; wrapped in DistributedDataParallel when world_size > 1."""

    name = "ddp"

    def __init__(self, model: nn.Module, opt: OptimSettings, world_size: int, device: torch.device,
                 loss_fn: LossFn = tokenizer_loss) -> None:
        self.module = model
        self.device = device
        self.loss_fn = loss_fn
        self.clip = opt.gradient_clipping
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model: nn.Module = DistributedDataParallel(model, device_ids=ids)
        else:
            self.model = model
        self.optimizer = torch.optim.AdamW(param_groups(model, opt.lr, opt.weight_decay))
        self.scheduler = warmup_cosine(self.optimizer, opt.total_steps, opt.warmup_fraction)

    def train_step(self, batch: Any) -> dict[str, float]:
        loss, metrics = self.loss_fn(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        return metrics

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save(self, directory: str, rank: int) -> bool:
        """Write the engine's state into ``directory``; True when this rank wrote files."""
        if rank != 0:
            return False
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   os.path.join(directory, OPTIMIZER_FILE))
        return True

    def load(self, directory: str) -> None:
        state = torch.load(os.path.join(directory, OPTIMIZER_FILE), map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class DeepSpeedEngine:
    """A real ``deepspeed.initialize`` engine (ZeRO stage from the JSON config) in each worker.

    Filled in from the pipeline config: micro batch = ``batch_size`` per worker, no gradient
    accumulation; with an ``optimizer`` section in the JSON its lr / weight_decay come from the
    pipeline config (per-group lr multipliers kept), else a client torch AdamW is used. The
    warm-up/cosine schedule is a client scheduler unless the JSON has a ``scheduler`` section.
    """

    name = "deepspeed"

    def __init__(self, model: nn.Module, opt: OptimSettings, world_size: int, device: torch.device,
                 ds_config: dict[str, Any], loss_fn: LossFn = tokenizer_loss,
                 zero3_unsupported: Optional[str] = None) -> None:
        import deepspeed

        self.loss_fn = loss_fn

        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                           ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
            os.environ.setdefault(key, value)  # Ray Train sets them; a bare process needs them
        backend = "nccl" if device.type == "cuda" else "gloo"
        deepspeed.init_distributed(dist_backend=backend)  # reuses Ray Train's process group

        config = copy.deepcopy(ds_config)
        stage = int(config.get("zero_optimization", {}).get("stage", 0))
        if stage >= 3:
            raise ValueError(zero3_unsupported or (
                "ZeRO stage 3 is not supported for the tokenizer: it partitions parameters, while "
                "the quantizer reads its codebooks outside their module's forward (codeword "
                "regulariser, hard codes); a ~3M-parameter model gains nothing from it. Use 0-2."))
        config.pop("train_batch_size", None)
        config["train_micro_batch_size_per_gpu"] = opt.batch_size
        config["gradient_accumulation_steps"] = 1
        if opt.gradient_clipping > 0:
            config["gradient_clipping"] = opt.gradient_clipping
        resolve_bf16(config, device)
        groups = param_groups(model, opt.lr, opt.weight_decay)
        optimizer: Optional[torch.optim.Optimizer] = None
        if "optimizer" in config:
            params = config["optimizer"].setdefault("params", {})
            params["lr"], params["weight_decay"] = opt.lr, opt.weight_decay
        else:
            optimizer = torch.optim.AdamW(groups)
            config.setdefault("zero_allow_untested_optimizer", True)
        scheduler = None
        if "scheduler" not in config:
            def scheduler(optim):
                return warmup_cosine(optim, opt.total_steps, opt.warmup_fraction)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=groups, optimizer=optimizer, lr_scheduler=scheduler, config=config)
        self.module = self.engine.module
        self.zero_stage = stage

    def train_step(self, batch: Any) -> dict[str, float]:
        loss, metrics = self.loss_fn(self.engine, batch)
        self.engine.backward(loss)
        self.engine.step()
        return metrics

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def save(self, directory: str, rank: int) -> bool:
        self.engine.save_checkpoint(os.path.join(directory, DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
        return True

    def load(self, directory: str) -> None:
        path, _ = self.engine.load_checkpoint(os.path.join(directory, DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint under {directory}/{DEEPSPEED_DIR}")


def resolve_bf16(config: dict[str, Any], device: torch.device) -> None:
    """``"bf16": {"enabled": "auto"}`` -> on where the device has bf16 (a CUDA GPU that supports
    it), off elsewhere: CPU workers train in fp32 (DeepSpeed's CPU bf16 path is not worth it for
    these model sizes)."""
    section = config.get("bf16")
    if isinstance(section, dict) and section.get("enabled") == "auto":
        section["enabled"] = bool(device.type == "cuda" and torch.cuda.is_bf16_supported())


def make_engine(strategy: str, model: nn.Module, opt: OptimSettings, world_size: int, device: torch.device,
                deepspeed_config: Optional[dict[str, Any]] = None, loss_fn: LossFn = tokenizer_loss,
                zero3_unsupported: Optional[str] = None):
    if strategy == "ddp":
        return DDPEngine(model, opt, world_size, device, loss_fn)
    if strategy == "deepspeed":
        if deepspeed_config is None:
            raise ValueError("strategy 'deepspeed' needs a DeepSpeed JSON config")
        return DeepSpeedEngine(model, opt, world_size, device, deepspeed_config, loss_fn, zero3_unsupported)
    raise ValueError(f"unknown strategy {strategy!r}; choose 'ddp' or 'deepspeed'")


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Every worker gets rank ``src``'s parameters and buffers (e.g. after k-means init)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)
