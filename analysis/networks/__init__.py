"""Trained networks as a cached artifact: train any variant to a plateau of its val mIoU (or a step
limit; a time guard stops a stalled run, whose network is incomplete and not kept) once, keep its
checkpoint and record, and reuse them in every later analysis (under every name of the same architecture).

    from analysis.networks import trained_set
    nets = trained_set("cpu")                 # the three families on MobileNet-v2, trained or loaded
    nets[0].model, nets[0].record["val_miou"]

One module per job, in the order a network passes through them: ``settings`` (the named settings and
``trained_set``), ``data`` (what it trains on, and its hash), ``recipe`` (the schedule: how it is trained),
``train`` (``train_network``: look it up, train it, keep it), ``store`` (the weights store: key, lock, files),
``loop`` (the training loop and its stopping rule), ``evaluation`` (its confusion matrix and mIoU).
``schedule`` and ``training`` are the old names of ``recipe`` and ``loop``, kept for imports.
"""

from .data import NetworkData, folder_hash, load_data
from .recipe import STOP_REASONS, Schedule, plateaued
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
