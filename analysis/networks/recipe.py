"""The recipe as data: how a network is trained (:class:`Schedule`), to a plateau of its val mIoU or to a step limit;
a time guard stops a stalled run. The loop that follows it is :mod:`analysis.networks.loop`.

The val mIoU is measured every ``eval_every`` steps; training stops at ``max_steps``, or earlier where, past
``plateau_from`` of the steps (never during the warm-up and the noisy rise), the last ``patience`` evaluations have
not beaten the best one before them by more than ``min_delta`` (:func:`analysis.networks.loop.plateaued`). A run
that reaches its step limit ends by the step limit, whatever its curve did. The weights kept are those of the best
evaluation. ``budget_min`` is a guard, not a stopping rule: a run it stops (``stop_reason: "budget"``) depends on the
machine's speed and load, so it is incomplete, never cached and never compared
(:class:`analysis.networks.train.IncompleteTraining`); it is not part of the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import validation
from bench.errors import UsageError

STOP_REASONS = ("plateau", "max_steps", "budget", "diverged")
DECAYS = ("constant", "cosine")
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Schedule:
    size: int = 128  # images and labels are resized to size x size for training and evaluation
    max_steps: int = 400
    eval_every: int = 25  # steps between val mIoU evaluations
    patience: int = 4  # evaluations without an improvement of more than min_delta before stopping
    min_delta: float = 0.005  # a fraction of mIoU (0.005 = half a point)
    budget_min: float | None = None  # wall-clock minutes per network, evaluations included (None: none)
    batch_size: int = 16
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw" (see analysis.networks.loop: why SGD)
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    clip_grad_norm: float = 1.0
    warmup_steps: int = 30  # linear learning-rate warm-up, then `decay`
    decay: str = "constant"  # "constant", or "cosine" to zero at max_steps (a run stopped earlier never gets there)
    crop: int | None = None  # random square crops (None: whole images)
    mixed_precision: bool = True  # bf16 autocast on CUDA; a CPU always trains in fp32
    zero_init_residual: bool = True  # every RCU / CRP branch starts at zero (analysis.networks.loop)
    freeze_bn: bool = False  # the backbone's BatchNorm statistics kept as they start (the paper's recipe)
    plateau_from: float = 0.5  # the share of max_steps before which the plateau rule never stops a run (1.0: never)
    label_noise: float = 0.0  # the share of training (image, class) regions given another class (the small harm)

    def validate(self) -> None:
        validation.integer("size", self.size, minimum=validation.MIN_SIDE, maximum=validation.MAX_SIDE)
        validation.integer("max_steps", self.max_steps, minimum=1)
        validation.integer("eval_every", self.eval_every, minimum=1)
        validation.integer("patience", self.patience, minimum=1)
        validation.number("min_delta", self.min_delta, minimum=0)
        if self.budget_min is not None:
            validation.minutes("budget_min", self.budget_min)
        if not self.freeze_bn and isinstance(self.batch_size, int) and self.batch_size == 1:
            raise UsageError("batch_size must be an integer >= 2 while BatchNorm trains (a batch of one image has one "
                             "value per channel at the backbone's coarsest stage); got 1 (or set freeze_bn = true)")
        validation.integer("batch_size", self.batch_size, minimum=1, maximum=validation.MAX_BATCH)
        validation.choice("optimizer", self.optimizer, OPTIMIZERS)
        validation.positive("lr", self.lr, "no learning")
        momentum = validation.number("momentum", self.momentum, minimum=0)
        if momentum >= 1:
            raise UsageError(f"momentum must be in [0, 1), got {self.momentum!r}")
        validation.number("weight_decay", self.weight_decay, minimum=0)
        validation.positive("clip_grad_norm", self.clip_grad_norm, "every step clipped to nothing")
        validation.integer("warmup_steps", self.warmup_steps, minimum=0)
        validation.choice("decay", self.decay, DECAYS)
        validation.boolean("zero_init_residual", self.zero_init_residual)
        validation.boolean("freeze_bn", self.freeze_bn)
        validation.number("plateau_from", self.plateau_from, minimum=0, maximum=1)
        validation.number("label_noise", self.label_noise, minimum=0, maximum=1)
        if self.crop is not None:
            validation.integer("crop", self.crop, minimum=validation.MIN_SIDE, maximum=self.size)
