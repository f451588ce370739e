"""Trained networks as a cached artifact: train any variant to a plateau of its val mIoU (or a step
limit; a time guard stops a stalled run, whose network is incomplete and not kept) once, keep its
checkpoint and record, and reuse them in every later analysis (under every name of the same architecture).

    from analysis.networks import trained_set
    nets = trained_set("cpu")                 # the three families on MobileNet-v2, trained or loaded
    nets[0].model, nets[0].record["val_miou"]
"""

from .data import NetworkData, folder_hash, load_data
from .schedule import STOP_REASONS, Schedule, plateaued
from .settings import CPU_DECODER, MAX_SEEDS, SETTINGS, NetworkSetting, network_setting, trained_set
from .train import (
    CACHE,
    IDENTITY,
    IncompleteTraining,
    TrainedNetwork,
    cache_entry,
    checkpoint_decoder,
    decoder_layers,
    evaluate,
    record_beside,
    train_network,
)

__all__ = [
    "CACHE",
    "CPU_DECODER",
    "IDENTITY",
    "MAX_SEEDS",
    "IncompleteTraining",
    "cache_entry",
    "checkpoint_decoder",
    "decoder_layers",
    "record_beside",
    "SETTINGS",
    "STOP_REASONS",
    "NetworkData",
    "NetworkSetting",
    "Schedule",
    "TrainedNetwork",
    "evaluate",
    "folder_hash",
    "load_data",
    "network_setting",
    "plateaued",
    "train_network",
    "trained_set",
]
