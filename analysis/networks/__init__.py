"""Trained networks as a cached artifact: train any variant to a plateau of its val mIoU (or a step
limit; a time guard stops a stalled run, whose network is incomplete and not kept) once, keep its
checkpoint and record, and reuse them in every later analysis (under every name of the same architecture).

    from analysis.networks import trained_set
    nets = trained_set("cpu")                 # the three families on MobileNet-v2, trained or loaded
    nets[0].model, nets[0].record["val_miou"]

One module per job, in the order a request flows through them: ``settings`` (the named settings, as data),
``sets`` (``trained_set``: the request checked once as a whole), ``data`` (what a network trains on, its hash, and
each split normalised once as the networks' inputs), ``pretrain`` (the backbone every network of a set starts from),
``train`` (``train_network``: find a network in the store, train it where the store does not hold it, keep it;
several at once in worker processes), ``store`` (the weights
store: key, lock, files), ``recipe`` (the schedule, as data), ``loop`` (the training loops and the stopping rule),
``evaluation`` (confusion matrices and mIoU), ``branches`` (how much each RCU changes its input). ``jobs`` trains a
set as jobs on the sweeps' executors; ``claims`` and ``spec_accuracy`` compare trained networks.
"""

from .data import NetworkData, folder_hash, load_data
from .evaluation import evaluate
from .loop import plateaued
from .recipe import STOP_REASONS, Schedule
from .sets import trained_set
from .settings import CPU_DECODER, MAX_SEEDS, SETTINGS, NetworkSetting, network_setting
from .store import IDENTITY, checkpoint_decoder, decoder_layers, record_beside
from .train import CACHE, IncompleteTraining, TrainedNetwork, lookup, train_network

__all__ = [
    "CACHE",
    "CPU_DECODER",
    "IDENTITY",
    "MAX_SEEDS",
    "IncompleteTraining",
    "lookup",
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
