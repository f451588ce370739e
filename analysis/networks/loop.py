"""The training loop: seeded steps of a segmenter (:func:`train_segmenter`, by its per-step
:class:`TrainSettings`), and :func:`fit`, which runs them to the step limit (or a plateau of the val mIoU, where the
recipe allows one: :func:`plateaued`) and keeps the best weights (the recipe, as data, is
:mod:`analysis.networks.recipe`; the weights store :mod:`analysis.networks.store`). The shared backbone's
classification pretraining takes its optimizer and learning-rate schedule from here too.

SGD with Nesterov momentum (the reference implementations' optimizer; AdamW on request) on
cross-entropy (255 ignored) with logits upsampled to the label size, random crops and horizontal
flips, gradient-norm clipping, a linear warm-up, a fixed number of steps. Meant for the small
embedded default on a CPU, not for reproducing the paper's training schedule. The model and its
inputs are put in channels-last memory format (the same values; about twice as fast on a CPU for
the light-weight decoders).

Why SGD: the original RefineNet decoder has no normalisation, and Adam moves every weight by about
the learning rate per step whatever its gradient's size. Measured on the 'cpu' trained set
(rf:mobilenet_v2, AdamW 2e-3): within 30-50 steps the summation ReLU of level 4 went dead (positive on
0.0% of val outputs), then level 2 or 3, and stayed dead (a dead ReLU passes no gradient), so the
network's 96% own val mIoU came through level 1 alone. With SGD (Nesterov momentum 0.9, lr 0.15) the
same network keeps every level alive (13-43% positive) at the same accuracy; see ``analysis.networks.settings``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UsageError

from ..datasets.voc import IGNORE
from . import evaluation
from .recipe import OPTIMIZERS, Schedule


@dataclass(frozen=True)
class TrainSettings:
    """The per-step settings of :func:`train_segmenter` (:func:`train_settings` makes them from a recipe)."""

    steps: int = 200
    batch_size: int = 8
    crop: int | None = 64  # random square crops (None: whole images); the network is fully convolutional
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip_grad_norm: float = 1.0  # the original RefineNet (no BatchNorm in the decoder) diverges without it
    warmup: float = 0.1  # fraction of the steps with a linear learning-rate warm-up
    seed: int = 0
    decay: str = "constant"  # after the warm-up: "constant", or "cosine" to zero at the last step
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "adamw"
    momentum: float = 0.9  # SGD only
    freeze_bn: bool = False  # BatchNorm layers keep their running statistics (eval mode); their affine maps train
    label_noise: float = 0.0  # the share of training (image, class) regions given another class (a harm control)


def train_settings(schedule: Schedule, seed: int) -> TrainSettings:
    """The per-step settings of a (checked) recipe's run of ``seed``, up to its step limit."""
    return TrainSettings(steps=schedule.max_steps, batch_size=schedule.batch_size, crop=schedule.crop, lr=schedule.lr,
                         weight_decay=schedule.weight_decay, clip_grad_norm=schedule.clip_grad_norm,
                         warmup=schedule.warmup_steps / schedule.max_steps, seed=seed, decay=schedule.decay,
                         optimizer=schedule.optimizer, momentum=schedule.momentum, freeze_bn=schedule.freeze_bn,
                         label_noise=schedule.label_noise)


def plateaued(scores: Sequence[float], patience: int, min_delta: float) -> bool:
    """The recipe's stopping rule: True when none of the last ``patience`` scores beats the best score before them by
    more than ``min_delta``; False while there are not yet more than ``patience`` scores."""
    if len(scores) <= patience:
        return False
    return not max(scores[-patience:]) > max(scores[:-patience]) + min_delta


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    val_miou: float = float("nan")


def zero_init_residual_branches(model: nn.Module) -> nn.Module:
    """Start every decoder residual branch at zero: the last conv of each RCU and every CRP conv.

    Each RCU and CRP then begins as the identity (as torchvision's ``zero_init_residual`` does for
    ResNet blocks). Without it the original RefineNet, which has no normalisation in its decoder,
    starts with logits in the hundreds and spends a short training recovering from that.
    The architecture is unchanged; the same init is used for every family.
    """
    from bench.models.blocks import BottleneckRCU, ChainedResidualPooling, ResidualConvUnit

    for module in model.modules():
        if isinstance(module, ResidualConvUnit):
            nn.init.zeros_(module.conv2.weight)
        elif isinstance(module, BottleneckRCU):
            nn.init.zeros_(module.conv3.weight)
        elif isinstance(module, ChainedResidualPooling):
            for conv in module.convs:
                nn.init.zeros_(conv.weight)
    return model


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm layer in eval mode: it normalises with the running statistics it starts with and never
    updates them (the paper: "we keep batch norm statistics frozen during the training"); its scale and shift still
    train."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


NOISE_SEED = 1234
"""The draw of :func:`mislabel`: one fixed draw whatever the training seed, so every harmed run of a set learns from
the same corrupted labels (a property of the data, as a real annotation error is)."""


def mislabel(masks: torch.Tensor, share: float, seed: int = NOISE_SEED) -> torch.Tensor:
    """``masks`` with each (image, foreground class) region given another foreground class with probability
    ``share`` (uniformly among the others; background and ignored pixels kept): a graded harm for the small-harm
    control (analysis/protocol.toml). Needs at least two foreground classes."""
    g = torch.Generator().manual_seed(seed)
    classes = sorted(int(c) for c in masks.unique() if 0 < int(c) < IGNORE)
    if len(classes) < 2:
        return masks
    out = masks.clone()
    for i in range(len(masks)):
        present = [c for c in classes if bool((masks[i] == c).any())]
        flips = torch.rand(len(present), generator=g) < share
        for c, flip in zip(present, flips.tolist(), strict=True):
            if flip:
                others = [o for o in classes if o != c]
                out[i][masks[i] == c] = others[int(torch.randint(len(others), (1,), generator=g))]
    return out


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer`` over every parameter of ``model`` (one learning rate for all). A recipe's
    optimizer is checked with the recipe (:meth:`Schedule.validate`); settings made by hand are checked here."""
    params = model.parameters()
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0,
                               weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {settings.optimizer!r}")


def lr_factor(step: int, steps: int, warm: int, decay: str) -> float:
    """The learning rate of step ``step`` (0-based) as a fraction of the peak: linear warm-up over ``warm`` steps,
    then constant or a half cosine that reaches zero after the last step."""
    if step < warm:
        return (step + 1) / warm
    if decay == "constant":
        return 1.0
    done = (step - warm + 1) / max(1, steps - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


def optimizer_and_schedule(model: nn.Module, settings: TrainSettings):
    """The optimizer over ``model`` and its learning-rate schedule (:func:`lr_factor`, stepped once per step)."""
    opt = make_optimizer(model, settings)
    warm = max(1, round(settings.warmup * settings.steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, settings.steps, warm,
                                                                               settings.decay))


def random_crop(x: torch.Tensor, y: torch.Tensor, size: int | None,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random ``size`` x ``size`` window (drawn from ``g``) of a batch of images and their masks, the same for
    every image of the batch; the whole images where ``size`` is None."""
    if not size:
        return x, y
    top = int(torch.randint(0, x.shape[-2] - size + 1, (1,), generator=g))
    left = int(torch.randint(0, x.shape[-1] - size + 1, (1,), generator=g))
    return x[..., top : top + size, left : left + size], y[..., top : top + size, left : left + size]


def train_segmenter(
    model: nn.Module,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    settings: TrainSettings | None = None,
    progress: Callable[[str], None] | None = print,
    device: str = "cpu",
    after_step: Callable[[int, float], bool] | None = None,
    mixed_precision: bool = False,
    resume: dict | None = None,
    keep: dict | None = None,
) -> TrainLog:
    """SGD or AdamW (``settings.optimizer``) on cross-entropy for ``settings.steps`` steps of
    ``settings.batch_size`` images (seeded) of ``inputs`` (normalised: ``NetworkData.train_inputs``).

    ``after_step(steps_done, loss)`` runs after every step (e.g. to evaluate and keep the best
    weights); returning True ends the training there, and ``keep`` (a dict) then receives what continuing needs
    (the step, the optimizer's and the schedule's states, the random streams, the data order); ``resume`` (such a
    dict, the model's weights already loaded) continues from it exactly as if the run had never stopped.
    ``mixed_precision``: bf16 autocast on CUDA (the loss and the optimiser stay fp32); ignored on a CPU, which trains
    in fp32.
    """
    settings = settings or TrainSettings()
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed)
    model.train().to(device, memory_format=torch.channels_last)  # before the optimiser takes its parameters
    if settings.freeze_bn:
        freeze_batchnorm(model)
    opt, schedule = optimizer_and_schedule(model, settings)
    if settings.label_noise:
        masks = mislabel(masks, settings.label_noise)
    log = TrainLog()
    start = time.perf_counter()
    order = torch.randperm(len(inputs), generator=g)
    cursor, first = 0, 0
    if resume is not None:  # where the stopped run was: every state that decides the next step
        opt.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        g.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        order, cursor, first = resume["order"], resume["cursor"], resume["step"]
    for step in range(first, settings.steps):
        if cursor + settings.batch_size > len(order):
            order, cursor = torch.randperm(len(inputs), generator=g), 0
        idx = order[cursor : cursor + settings.batch_size]
        cursor += settings.batch_size
        x, y = random_crop(inputs[idx], masks[idx], settings.crop, g)
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(-1), y)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        autocast = mixed_precision and device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = F.interpolate(model(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits.float(), y.to(device).long(), ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
        opt.step()
        schedule.step()
        log.losses.append(float(loss.detach()))
        if progress and (step + 1) % max(1, settings.steps // 5) == 0:
            recent = sum(log.losses[-10:]) / len(log.losses[-10:])
            progress(f"    step {step + 1}/{settings.steps}: loss {recent:.3f} ({time.perf_counter() - start:.0f} s)")
        if after_step is not None and after_step(step + 1, log.losses[-1]):
            if keep is not None:
                keep.update(step=step + 1, optimizer=opt.state_dict(), scheduler=schedule.state_dict(),
                            generator=g.get_state(), torch_rng=torch.get_rng_state(), order=order, cursor=cursor)
            break
    log.seconds = time.perf_counter() - start
    model.eval()
    return log


TRAIN_THREADS = 1
"""A CPU trains on this many threads, whatever the machine has: the float order of a convolution, and so the exact
weights, depend on the thread count (a 1-thread worker and a 2-thread process trained RefineNet to weights with
different dead levels), while the cache key does not. Several networks train at once instead
(:func:`analysis.networks.trained_set`), one per core."""


def fit(model: nn.Module, data, schedule, seed: int, device: str, label: str,
         progress: bool, resume: dict | None = None) -> dict:
    """Train ``model`` on ``data`` (:class:`~analysis.networks.data.NetworkData`) by ``schedule``
    (:class:`~analysis.networks.recipe.Schedule`) to the plateau or max_steps, or until the time guard stops it
    (``complete`` False, and ``partial``: what continuing needs); load the best evaluated weights; the run's facts.
    ``resume``: a stopped run's ``partial``: the same run continues where it stopped (the same weights as if it had
    never stopped: the guard stops between steps and never adds an evaluation)."""
    from tqdm import tqdm

    settings = train_settings(schedule, seed)
    if schedule.zero_init_residual:
        zero_init_residual_branches(model)
    at_init = initial_branch_shares(model, data)
    history: list[dict] = []
    best = {"miou": -math.inf, "step": 0, "state": None, "cm": None}
    if resume is not None:
        model.load_state_dict(resume["model"])
        history, best, at_init = list(resume["history"]), dict(resume["best"]), resume["at_init"]
    stop = {"reason": "max_steps"}
    start = time.perf_counter()
    bar = tqdm(total=schedule.max_steps, desc=label, unit="step", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, initial=resume["train"]["step"] if resume else 0)

    def check(step: int) -> bool:
        """Evaluate (every eval_every steps and at the last step); True ends the training."""
        over_budget = schedule.budget_min is not None and time.perf_counter() - start >= 60 * schedule.budget_min
        if over_budget and step < schedule.max_steps and step % schedule.eval_every:
            stop["reason"] = "budget"  # between evaluations: stopped, nothing evaluated that a whole run would not
            return True
        if step % schedule.eval_every and step < schedule.max_steps:
            return False
        cm = evaluation.evaluate(model, data.val_inputs, data.val_masks, data.num_classes, device,
                                 schedule.mixed_precision)
        miou, _ = evaluation.miou(cm)
        history.append({"step": step, "val_miou": miou, "seconds": time.perf_counter() - start})
        if miou > best["miou"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best.update(miou=miou, step=step, state=state, cm=cm)
        bar.set_postfix(val_miou=f"{100 * miou:.1f}%", best=f"{100 * best['miou']:.1f}%")
        if step >= schedule.max_steps:  # the step limit ends the run as the step limit, whatever the curve did
            return False
        if step >= schedule.plateau_from * schedule.max_steps and plateaued(
                [h["val_miou"] for h in history], schedule.patience, schedule.min_delta):
            stop["reason"] = "plateau"
            return True
        if over_budget:
            stop["reason"] = "budget"
            return True
        return False

    def after_step(step: int, loss: float) -> bool:
        bar.update(1)
        if not math.isfinite(loss):  # diverged: nothing after this is a network, and it is never kept
            history.append({"step": step, "val_miou": math.nan, "seconds": time.perf_counter() - start})
            stop["reason"] = "diverged"
            return True
        return check(step)

    kept: dict = {}
    try:
        train_segmenter(model, data.train_inputs, data.train_masks, settings,
                        progress=None, device=device, after_step=after_step,
                        mixed_precision=schedule.mixed_precision, resume=resume["train"] if resume else None,
                        keep=kept)
    finally:
        bar.close()
    seconds = time.perf_counter() - start + (resume["seconds"] if resume else 0.0)
    if stop["reason"] == "budget":  # what continuing needs, before the best weights replace the current ones
        partial = {"model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
                   "history": history, "best": best, "at_init": at_init, "train": kept, "seconds": seconds}
    else:
        partial = None
    if best["state"] is None:  # stopped before its first evaluation: no weights to keep
        return {"steps": kept.get("step", history[-1]["step"] if history else 0), "best_step": 0,
                "stop_reason": stop["reason"], "complete": False, "seconds": seconds, "val_miou": math.nan,
                "val_iou_per_class": {}, "history": history, "rcu_shares_at_init": at_init, "partial": partial}
    model.load_state_dict(best["state"])
    model.eval()
    # the kept weights' own evaluation (eval mode: the same as evaluating again)
    miou, per_class = evaluation.miou(best["cm"])
    return {"steps": kept.get("step", history[-1]["step"]), "best_step": best["step"], "stop_reason": stop["reason"],
            "partial": partial,
            "complete": stop["reason"] not in ("budget", "diverged"), "seconds": seconds, "val_miou": miou,
            "val_iou_per_class": dict(zip(data.classes, per_class, strict=True)),
            "history": history, "rcu_shares_at_init": at_init}


def crop_labels(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K-1) multi-label targets: which foreground classes (1..K-1) have a pixel in each mask (255 ignored)."""
    labels = torch.arange(1, num_classes, device=masks.device).view(1, -1, 1, 1)
    return (masks.unsqueeze(1) == labels).flatten(2).any(-1).float()


def fit_classifier(model: nn.Module, data, settings: TrainSettings, device: str, label: str,
                   progress: bool) -> dict:
    """Train ``model`` (a backbone with a linear head, one logit per foreground class) to say which classes a random
    crop of a training image holds (:func:`crop_labels`, binary cross-entropy): the shared backbone's classification
    pretraining (:mod:`analysis.networks.pretrain`). The recipe's optimizer, learning-rate schedule, batch, crop,
    flips and gradient clip; batches drawn with replacement from a generator seeded by ``settings.seed``. The run's
    facts: its steps and seconds, its last loss, and its per-label accuracy and exact-match share on whole val
    images."""
    from tqdm import tqdm

    truth = crop_labels(data.val_masks.to(device), data.num_classes) > 0.5  # what it should learn, on val
    g = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    opt, lr = optimizer_and_schedule(model, settings)
    model.train()
    for _ in tqdm(range(settings.steps), desc=label, unit="step", disable=not progress, leave=False):
        idx = torch.randint(len(data.train_inputs), (settings.batch_size,), generator=g)
        x, y = random_crop(data.train_inputs[idx], data.train_masks[idx], settings.crop, g)
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        target = crop_labels(y.to(device), data.num_classes)  # which classes the crop holds (a flip keeps them)
        loss = F.binary_cross_entropy_with_logits(model(x.to(device)), target)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
        opt.step()
        lr.step()
    model.eval()
    with torch.no_grad():  # how well it learned: per-label accuracy on whole val images
        predicted = torch.cat([model(data.val_inputs[i : i + 32].to(device)) > 0
                               for i in range(0, len(data.val_inputs), 32)])
    return {"steps": settings.steps, "seconds": time.perf_counter() - start,
            "val_label_accuracy": float((predicted == truth).float().mean()),
            "val_exact_match": float((predicted == truth).all(1).float().mean()), "final_loss": float(loss.detach())}


def initial_branch_shares(model: nn.Module, data) -> list[dict]:
    """Every RCU's branch share per val image before training (the saturation claim's reference: growth in training
    is measured against it; :mod:`analysis.networks.branches`); [] for a decoder without RCUs."""
    from ..protocol import PROTOCOL
    from .branches import rcu_branch_shares

    count = int(PROTOCOL.claim("rcu_saturation")["images"])
    shares = rcu_branch_shares(model, data.val_inputs[:count])
    return shares.drop(columns="level").to_dict("records")
