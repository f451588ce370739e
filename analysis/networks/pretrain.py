"""One backbone pretrained once on the setting's own training data and shared by every decoder (the role ImageNet
pretraining plays in the paper): every network of a set, every control and every ablation variant then starts
from the same backbone weights, so what differs between two networks of one seed is their decoder.

Two ways (``Pretrain.task``). **classification** (the paper's way: ImageNet pretraining is a classification task,
blind to any decoder): the backbone's classification network, with a linear head on its deepest features, learns
which classes a random crop of a training image holds (multi-label, binary cross-entropy), by the setting's recipe
(optimizer, lr, warm-up, decay, steps, batch, crop); no decoder shapes its features
(:func:`classification_backbone`). **segmentation**: the backbone is pretrained under a decoder that is none of the
three families': LW without CRP (1x1 convolutions and the summation only, ``Pretrain.decoder``), so that no family's
decoder shaped the features the others start from, and the backbone itself must carry the context that a 1x1 decoder
cannot gather (until 2026-12-05 this was also the harmful-change control's decoder; that control now refines the
coarsest level alone, ``analysis.networks.claims.HARMFUL_CHANGE``). It is an ordinary trained network (the weights
store keys and keeps it), seeded apart from the compared networks (``Pretrain.seed``); its backbone is written
beside it as ``backbone.pt`` (a state dict of the backbone's classification network, the format
``--backbone-checkpoint`` takes), whose SHA-256 is then part of every network's key. The named settings use
segmentation; why, with the classification pretraining's measured effect: README.md, "How the named settings were
chosen".
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from bench.models import variant_info

from .data import NetworkData
from .recipe import Schedule

BACKBONE_FILE = "backbone.pt"


TASKS = ("segmentation", "classification")


@dataclass(frozen=True)
class Pretrain:
    """How a setting's shared backbone is pretrained: the task (:data:`TASKS`), the decoder changes (on ``rf_lw``,
    segmentation only) and the seed."""

    task: str = "segmentation"
    decoder: dict = field(default_factory=lambda: {"channels": 48, "top_channels": 96, "crp_stages": 0})
    seed: int = 10_000  # apart from the compared networks' seeds (0, 1, 2, ...)
    zero_init_residual: bool = True  # the pretraining's own decoder init, whatever the compared networks' (so that
    # two sets that differ only in their decoders' init, e.g. the init check, start from one and the same backbone)
    max_steps: int | None = None  # the pretraining's own step limit (None: the setting's schedule's; never more than
    # it), so that two sets that differ only in how long their decoders train (the multiverse's twice-the-steps recipe)
    # start from one and the same backbone

    def schedule(self, schedule: Schedule) -> Schedule:
        """The schedule the pretraining runs: the setting's, with this pretraining's own init and step limit, its
        BatchNorm trained and its labels as they are (a recipe that freezes BatchNorm or mislabels data changes the
        compared networks' training, never the backbone they share)."""
        # never longer than the run's own step limit: a --steps that bounds the compared networks bounds the backbone
        # they start from too (the named settings' backbone steps are below their limits)
        steps = schedule.max_steps if self.max_steps is None else min(self.max_steps, schedule.max_steps)
        return replace(schedule, zero_init_residual=self.zero_init_residual, max_steps=steps, freeze_bn=False,
                       label_noise=0.0)

    def describe(self, backbone: str) -> str:
        if self.task == "classification":
            return (f"backbone pretrained once as a classifier (which classes a crop holds; no decoder) on the same "
                    f"training split, seed {self.seed}, {self._schedule_words().replace('schedule', 'recipe')}, and "
                    "shared by every network")
        others = {k: v for k, v in self.decoder.items() if k not in ("channels", "top_channels", "crp_stages")}
        if self.decoder.get("crp_stages") == 0 and not others:
            decoder = "without CRP (1x1 convolutions only)"
        else:  # words derived from the changes themselves, never a fixed description
            decoder = "with " + ", ".join(f"{k}={v}" for k, v in self.decoder.items())
        return (f"backbone pretrained once on the same training split under rf_lw:{backbone} {decoder}, "
                f"seed {self.seed}, {self._schedule_words()}, and shared by every network")

    def _schedule_words(self) -> str:
        return "the same schedule" if self.max_steps is None else f"the same schedule at {self.max_steps} steps"



def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone of a RefineNet as a state dict of its classification network (the keys a backbone
    checkpoint has)."""
    prefix = "backbone.body."
    state = {k[len(prefix):]: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}
    if not state:
        raise RuntimeError(f"no '{prefix}*' weights in {type(model).__name__}: not a RefineNet of this project")
    return state


def starting_weights(pretrain: Pretrain | None, names: Sequence[str], backbone_weights: str | None,
                     data: NetworkData, schedule: Schedule, device: str, cache_dir: Path, progress: bool = True,
                     say=print, only_cached: bool = False) -> dict[str, str | None]:
    """{variant: the backbone checkpoint it starts from}, in the order of ``names``: ``backbone_weights`` where given,
    else the shared backbone ``pretrain`` makes for its architecture (pretrained once where the store does not hold
    it; ``only_cached``: a variant whose shared backbone the store does not hold is left out), else None (from
    scratch)."""
    if backbone_weights is not None or pretrain is None:
        return dict.fromkeys(names, backbone_weights)
    shared = shared_backbones(pretrain, names, data, schedule, device, cache_dir, progress, say, only_cached)
    return {name: shared[variant_info(name).backbone] for name in names
            if shared[variant_info(name).backbone] is not None}


def shared_backbones(pretrain: Pretrain, names: Sequence[str], data: NetworkData, schedule: Schedule, device: str,
                     cache_dir: Path, progress: bool = True, say=print,
                     only_cached: bool = False) -> dict[str, str | None]:
    """{backbone: the path of its shared pretrained checkpoint} for the backbones of ``names``, each pretrained
    once where the store does not hold it (``only_cached``: None for those)."""
    return {b: pretrained_backbone(pretrain, b, data, schedule, device, cache_dir, progress, say, only_cached)
            for b in dict.fromkeys(variant_info(n).backbone for n in names)}


def pretrained_backbone(pretrain: Pretrain, backbone: str, data: NetworkData, schedule: Schedule, device: str,
                        cache_dir: Path, progress: bool = True, say=print, only_cached: bool = False) -> str | None:
    """The path of the shared backbone checkpoint, pretraining it first where the weights store does not hold it
    (``only_cached``: never train; None where the store does not hold it)."""
    from .train import train_or_load

    schedule = pretrain.schedule(schedule)  # a classifier has no decoder: its init does not apply, its step limit does
    if pretrain.task == "classification":
        return classification_backbone(pretrain, backbone, data, schedule, device, cache_dir, progress, say,
                                       only_cached)
    net = train_or_load(f"rf_lw:{backbone}", data, schedule, pretrain.seed, device, dict(pretrain.decoder),
                        Path(cache_dir), progress, say, None, only_cached)
    if net is None:  # only_cached, and the store does not hold it
        return None
    path = net.path / BACKBONE_FILE
    if not path.is_file():
        _write_whole(backbone_state(net.model), path)
    if say and not net.cached:
        r = net.record
        say(f"  shared backbone pretrained: {pretrain.describe(backbone)}; own val mIoU "
            f"{100 * r['val_miou']:.1f}% after {r['steps']} steps ({r['seconds']:.0f} s)")
    return str(path)


class _Classifier(torch.nn.Module):
    """A backbone's feature extractor with global average pooling and a linear head on its deepest features."""

    def __init__(self, backbone: str, num_labels: int) -> None:
        from bench.models.backbones import create_backbone

        super().__init__()
        self.backbone = create_backbone(backbone)
        self.head = torch.nn.Linear(self.backbone.feature_info[-1].channels, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean((-2, -1)))


def classification_backbone(pretrain: Pretrain, backbone: str, data: NetworkData, schedule: Schedule, device: str,
                            cache_dir: Path, progress: bool = True, say=print, only_cached: bool = False
                            ) -> str | None:
    """The path of a backbone pretrained as a multi-label classifier of random crops (``Pretrain.task`` =
    "classification"), from the weights store when it holds it (``only_cached``: never train; None if absent).
    Kept like a trained network (key, lock, whole write), with ``backbone.pt`` beside it."""
    import dataclasses

    from bench.environment import environment, torch_threads

    from . import store
    from .loop import TRAIN_THREADS, fit_classifier, train_settings

    env = store.training_environment(device)
    recipe = {k: v for k, v in dataclasses.asdict(schedule).items()
              if k not in store.NOT_IN_KEY + ("eval_every", "patience", "min_delta", "zero_init_residual", "freeze_bn",
                                              "label_noise", "plateau_from")}
    identity = {"training_version": store.TRAINING_VERSION, "architecture": f"classifier:{backbone}",
                "backbone": backbone, "layers": {"task": "classification", "head": "global average pool + linear"},
                "backbone_weights": None, "num_classes": data.num_classes, "classes": list(data.classes),
                "data_hash": data.hash, "size": data.size, "schedule": recipe, "seed": pretrain.seed, **env,
                "precision": "fp32"}
    key = store.entry_key(identity)
    folder = Path(cache_dir) / f"{backbone}-classifier-seed{pretrain.seed}-{key}"
    path = folder / BACKBONE_FILE
    record, _ = store.valid_cached(folder, identity)
    if record is not None and path.is_file():
        return str(path)
    if only_cached:
        return None
    with store.entry_lock(folder):
        record, _ = store.valid_cached(folder, identity)
        if record is not None and path.is_file():
            return str(path)
        torch.manual_seed(pretrain.seed)
        model = _Classifier(backbone, data.num_classes - 1).to(device)
        settings = train_settings(schedule, pretrain.seed)
        with torch_threads(TRAIN_THREADS if device == "cpu" else None):
            result = fit_classifier(model, data, settings, device, f"pretraining {backbone} as a classifier",
                                    progress)
        record = {**identity, "key": key, "variant": f"classifier:{backbone}", "family": "classifier",
                  "task": "classification", **result, "device": device, "environment": environment(device),
                  "complete": True}
        record = store.write(folder, model, record)
        _write_whole(model.backbone.body.state_dict(), path)
    if say:
        say(f"  shared backbone pretrained: {pretrain.describe(backbone)}; val label accuracy "
            f"{100 * record['val_label_accuracy']:.1f}% (exact match {100 * record['val_exact_match']:.1f}%) after "
            f"{record['steps']} steps ({record['seconds']:.0f} s)")
    return str(path)


def _write_whole(state: dict, path: Path) -> None:
    """A state dict written whole: a temp file in the same folder, then renamed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".backbone-", suffix=".pt")
    os.close(fd)
    try:
        # saved through memory: torch.save names the archive inside the file after the file (here a random temp
        # name), so the same weights saved to a temp file gave other bytes, hence another digest in every network's
        # key, on every machine and clone; from a buffer the inner name is always "archive"
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        Path(tmp).write_bytes(buffer.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def torchvision_weights(backbone: str, name: str, cache_dir: str | Path) -> str:
    """A local file holding torchvision's ``name`` weights (e.g. ``IMAGENET1K_V1``) for ``backbone``'s classification
    network, written once into ``cache_dir/backbones/`` (its SHA-256 then keys every network that starts from it, as
    a ``--backbone-checkpoint`` does): the paper's setting, an ImageNet-pretrained backbone. torchvision downloads the
    weights where the machine has internet; offline, the error names the file torchvision looked for."""
    import torchvision

    from bench.errors import DataError
    from bench.models.backbones import _check_weights_name

    _check_weights_name(backbone, name)  # an unknown name lists the valid ones
    enum = torchvision.models.get_model_weights(backbone)
    weights = enum.DEFAULT if name == "DEFAULT" else enum[name.split(".")[-1]]
    target = Path(cache_dir) / "backbones" / f"{backbone}-{weights.name}.pt"
    if target.is_file():
        return str(target)
    looked = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as err:  # no internet (URLError, OSError, ...): torchvision found no file and could not fetch it
        raise DataError(f"cannot load torchvision's {weights.name} weights for {backbone}: {type(err).__name__} "
                        f"({str(err)[:120]}); torchvision looked for {looked}: put that file there, or give "
                        "--backbone-checkpoint PATH (a state dict of the classification network)") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_whole(state, target)
    return str(target)
