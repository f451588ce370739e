"""Named settings of the embedded default (both on the generated shapes data), and a trained set.

``cpu``: fits the CPU bench budget: ResNet-18 under the three families with narrowed decoders (64
channels, 128 at level 4: the families' kernels, blocks and CRP unchanged), images at 128 px, one
seed. ``gpu``: the families' own widths, images at 256 px (the probes' size), three seeds.
Both use the same generated data (400 train / 80 val images) and the same schedule rules for every
family; they differ in image size, step limit, evaluation spacing and budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import validation
from bench.errors import UsageTypeError
from bench.models import variant_info

from ..datasets.synthetic import SyntheticSpec
from .data import load_data
from .schedule import Schedule
from .train import TrainedNetwork, check_device, train_network

CPU_DECODER = {"channels": 64, "top_channels": 128}
"""The CPU narrowing of every family's decoder (the probes and the ERF section use the same networks)."""
DATA = SyntheticSpec(n_train=400, n_val=80)


@dataclass(frozen=True)
class NetworkSetting:
    name: str
    schedule: Schedule
    seeds: int
    device: str
    decoder: dict | None = None  # DecoderSpec changes for every family (None: the families' own widths)
    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    data: SyntheticSpec = field(default=DATA)

    def variants(self) -> list[str]:
        return [f"{family}:{self.backbone}" for family in self.families]


SETTINGS: dict[str, NetworkSetting] = {
    # Chosen by measurement on this project's 2-core AMD EPYC (AVX2), batch 8, own val mIoU (see README "trained set"):
    # rf_lw at whole 128px images: 1e-3 constant 94.5% after 400 steps (200 s); 2e-3 + cosine over 250: 85.5%;
    # 96px crops of the 128px images cost 0.56x per step: 2e-3 constant, rf_lw 92.3% at 475 (87.9% at 375), rf 91.7%
    # at 250; rf at 4e-3 + cosine: 83.6% (too high for the decoder without BatchNorm); batch 4: 80% after 500 (noisy).
    # LW needs about twice RefineNet's steps: the step limit is set for LW; the plateau rule may end RefineNet sooner.
    # The budget only guards a stalled or shared machine.
    "cpu": NetworkSetting("cpu", Schedule(size=128, crop=96, batch_size=8, lr=2e-3, decay="cosine", max_steps=450,
                                          eval_every=50, patience=3, min_delta=0.005, budget_min=5.0),
                          seeds=1, device="cpu", decoder=CPU_DECODER),
    # Not run here (no GPU was lent): 9 networks, each capped at 0.45 min, so all of them fit 5 minutes on one
    # H100/H200-class GPU; the plateau rule is meant to end them before the cap.
    "gpu": NetworkSetting("gpu", Schedule(size=256, max_steps=1500, eval_every=50, patience=4, min_delta=0.005,
                                          budget_min=0.45), seeds=3, device="cuda"),
}


def network_setting(setting: str | NetworkSetting) -> NetworkSetting:
    if isinstance(setting, NetworkSetting):
        return setting
    if not isinstance(setting, str):
        raise UsageTypeError(f"setting must be a name ({', '.join(SETTINGS)}) or a NetworkSetting, got {setting!r}")
    return SETTINGS[validation.choice("setting", setting, SETTINGS)]


def trained_set(
    setting: str | NetworkSetting = "cpu",
    variants: Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    data: SyntheticSpec | str | Path | None = None,
    device: str | None = None,
    num_classes: int | None = None,
    schedule: Schedule | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = print,
) -> list[TrainedNetwork]:
    """Every (variant, seed) network of a setting, trained where the cache does not hold it yet.

    ``variants``: default the setting's three families on its backbone (with the setting's decoder
    changes; explicit variants get them too). ``seeds``: a count (0..N-1) or the seeds themselves.
    ``data``: a VOC-layout folder instead of the setting's generated data (read once for all networks).
    """
    chosen = network_setting(setting)
    names = list(variants) if variants is not None else chosen.variants()
    if isinstance(names, str) or not names:
        raise UsageTypeError(f"variants must be a non-empty list of variant names, got {variants!r}")
    for name in names:
        variant_info(name)
    if seeds is None:
        seed_list = list(range(chosen.seeds))
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        seed_list = list(range(validation.integer("seeds", seeds, minimum=1)))
    else:
        seed_list = [validation.integer("seed", s, minimum=0) for s in seeds]
    run_schedule = schedule or chosen.schedule
    run_schedule.validate()
    device = check_device(device or chosen.device)
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes,
                       progress=say)
    if say:
        say(f"  {len(names) * len(seed_list)} networks ({chosen.name} setting) on {loaded.describe()}")
    return [train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder, cache_dir=cache_dir,
                          progress=progress, say=say)
            for seed in seed_list for name in names]



