"""The trained-network cache, field by field and under concurrency: each identity field alone decides a miss; two
names of one architecture share one network; a second run waits for the first's lock and reuses its network;
files and folders are readable by others; a setting never overrides a variant's own decoder; trained_set's
arguments are typed as the README says; the project's own checkpoints load where a checkpoint is accepted.

Tiny: 64-px generated images, ResNet-18 under a 16/32-channel decoder, 3 steps (about a second a network).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import threading
import time

import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.datasets.synthetic import SyntheticSpec
from analysis.networks import (
    IDENTITY,
    NetworkSetting,
    Schedule,
    load_data,
    train_network,
    trained_set,
)
from analysis.networks import loop as loop_module
from analysis.networks import store as store_module
from analysis.networks import train as train_module
from bench.errors import DataError, UsageError, UsageTypeError
from bench.models import register_variant

TINY_DATA = SyntheticSpec(n_train=8, n_val=4, size=64, radius=(4, 14))
# fp32 everywhere, so that a device kind changes that field alone (not the precision with it)
TINY_SCHEDULE = Schedule(size=64, max_steps=3, eval_every=2, batch_size=4, warmup_steps=1, mixed_precision=False)
NARROW = {"channels": 16, "top_channels": 32}
VARIANT = "rf_lw:resnet18"
TINY = NetworkSetting("tiny", TINY_SCHEDULE, seeds=1, device="cpu", decoder=NARROW, backbone="resnet18",
                      families=("rf_lw",), data=TINY_DATA)


class Trained(Exception):
    """Raised by a stand-in for the training: proves a call would have trained."""


def _no_training(*args, **kwargs):
    raise Trained


def _same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data():
    return load_data(TINY_DATA, TINY_SCHEDULE.size, progress=None)


@pytest.fixture(scope="module")
def base(data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return train_network(VARIANT, data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)


def _identity(data, variant=VARIANT, schedule=TINY_SCHEDULE, seed=0, decoder=NARROW, device="cpu"):
    return store_module.identity(variant, data, schedule, seed, device, decoder, "unused")[1]


def _real_env():
    return store_module.training_environment("cpu")


# --- one field at a time ------------------------------------------------------------------------------------------

FIELD_CHANGES = {
    "seed": lambda d: {"seed": 1},
    "data_hash": lambda d: {"data": dataclasses.replace(d, hash="0" * 64)},
    "schedule": lambda d: {"schedule": dataclasses.replace(TINY_SCHEDULE, lr=0.05)},
    "layers": lambda d: {"decoder": {"channels": 16, "top_channels": 32, "crp_pool_kernel": 3}},
    "torch": lambda d: {"env": {**_real_env(), "torch": "1.13"}},
    "device_kind": lambda d: {"env": {**_real_env(), "device_kind": "cuda"}},
    "hardware": lambda d: {"env": {**_real_env(), "hardware": "another CPU"}},
}


@pytest.mark.parametrize("field", list(FIELD_CHANGES))
def test_each_identity_field_alone_decides_a_miss(field, base, data, monkeypatch):
    """Changing only ``field`` changes only that field of the identity (and the architecture hash with the layers),
    and the call that would reuse the cached network trains instead."""
    change = FIELD_CHANGES[field](data)
    before = _identity(data)
    env = change.pop("env", None)
    if env is not None:
        monkeypatch.setattr(store_module, "training_environment", lambda device: dict(env))
    args = {"data": data, "schedule": TINY_SCHEDULE, "seed": 0, "decoder": NARROW, **change}
    after = _identity(args["data"], schedule=args["schedule"], seed=args["seed"], decoder=args["decoder"])
    differ = {k for k in IDENTITY if before[k] != after[k]}
    assert differ == ({"layers", "architecture"} if field == "layers" else {field})
    monkeypatch.setattr(loop_module, "fit", _no_training)
    with pytest.raises(Trained):
        train_network(VARIANT, args.pop("data"), cache_dir=base.path.parent, progress=False, **args)


def test_the_unchanged_identity_is_a_hit(base, data, monkeypatch):
    monkeypatch.setattr(loop_module, "fit", _no_training)
    again = train_network(VARIANT, data, TINY_SCHEDULE, 0, decoder=NARROW, cache_dir=base.path.parent,
                          progress=False)
    assert again.cached and again.path == base.path and _same_weights(again.model, base.model)


def test_the_time_guard_is_not_part_of_the_key(base, data, monkeypatch):
    """The guard never decides kept weights: a network trained without one is reused under any budget."""
    monkeypatch.setattr(loop_module, "fit", _no_training)
    again = train_network(VARIANT, data, dataclasses.replace(TINY_SCHEDULE, budget_min=30.0), 0, decoder=NARROW,
                          cache_dir=base.path.parent, progress=False)
    assert again.cached and again.path == base.path


def test_a_network_the_time_guard_stops_is_not_cached_and_the_cli_says_so(tmp_path, capsys, monkeypatch):
    import analysis.networks.settings as settings_module

    monkeypatch.setitem(settings_module.SETTINGS, "cpu",
                        dataclasses.replace(TINY, name="cpu", schedule=dataclasses.replace(
                            TINY_SCHEDULE, max_steps=50, eval_every=25)))
    monkeypatch.setattr(time, "perf_counter", _fast_clock())
    assert analysis_main(["train", "--setting", "cpu", "--cache", str(tmp_path), "--budget-min", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "time guard" in err and "incomplete: not cached and not compared" in err
    assert "internal error" not in err
    # the data and the partial run, no network
    assert not [p for p in tmp_path.iterdir() if p.name not in (".locks", ".partial", "synthetic-voc")]


def _fast_clock():
    """A perf_counter that moves a minute per call: every training looks stalled to the guard."""
    ticks = iter(range(0, 10**9, 60))
    return lambda: float(next(ticks))


# --- names of one architecture -----------------------------------------------------------------------------------


def test_two_names_of_one_architecture_share_one_network(data, tmp_path, monkeypatch):
    register_variant("crp1_a", VARIANT, crp_stages=1)
    register_variant("crp1_b", VARIANT, crp_stages=1)
    first = train_network("crp1_a", data, TINY_SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(loop_module, "fit", _no_training)
    said: list[str] = []
    second = train_network("crp1_b", data, TINY_SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False,
                           say=said.append)
    assert second.cached and second.path == first.path and _same_weights(first.model, second.model)
    assert (second.record["variant"], second.record["trained_as"]) == ("crp1_b", "crp1_a")
    assert any("the same network as crp1_a" in line for line in said)
    # a different architecture under the same family and backbone is another network
    register_variant("crp2", VARIANT, crp_stages=2)
    with pytest.raises(Trained):
        train_network("crp2", data, TINY_SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False)


SPEC = """
[variants.a]
base = "rf_lw:resnet18"
decoder.crp_stages = 1

[variants.b]
base = "rf_lw:resnet18"
decoder.crp_stages = 1

[variants.wide]
base = "rf_lw:resnet18"
decoder.channels = 24
decoder.top_channels = 24
"""


def test_train_spec_trains_every_variant_once_per_architecture(tmp_path, capsys, monkeypatch):
    import json

    import analysis.networks.settings as settings_module

    monkeypatch.setitem(settings_module.SETTINGS, "cpu", dataclasses.replace(TINY, name="cpu"))
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    cache = tmp_path / "cache"
    args = ["train", "--spec", str(spec), "--setting", "cpu", "--cache", str(cache), "--json"]
    assert analysis_main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["variant"] for r in rows) == ["a", "b", "rf_lw:resnet18", "wide"]
    by = {r["variant"]: r for r in rows}
    assert by["a"]["path"] == by["b"]["path"] and by["b"]["trained_as"] == "a" and by["b"]["cached"]
    assert len({r["path"] for r in rows}) == 3  # three architectures, three networks
    assert len([p for p in cache.iterdir() if p.name not in (".locks", ".partial", "synthetic-voc")]) == 3
    # the spec's own widths are kept over the setting's narrowing (16/32)
    record = json.loads((cache / by["wide"]["path"].split("/")[-1] / "record.json").read_text())
    assert (record["decoder"]["channels"], record["decoder"]["top_channels"]) == (24, 24)
    assert record["decoder_changes"]["kept_over_setting"] == {"channels": {"setting": 16, "variant": 24},
                                                              "top_channels": {"setting": 32, "variant": 24}}


# --- problem 1: the setting's decoder never silently replaces a variant's own -------------------------------------


def test_a_variants_own_widths_are_kept_over_the_settings_and_the_record_says_so(tmp_path):
    register_variant("lw_wide", VARIANT, channels=24, top_channels=24)
    said: list[str] = []
    (net,) = trained_set(TINY, variants=["lw_wide"], cache_dir=tmp_path, progress=False, say=said.append, workers=1)
    assert (net.model.spec.channels, net.model.spec.top_channels) == (24, 24)
    assert net.record["decoder_changes"] == {
        "setting": NARROW, "variant": {"channels": 24, "top_channels": 24},
        "kept_over_setting": {"channels": {"setting": 16, "variant": 24},
                              "top_channels": {"setting": 32, "variant": 24}}}
    assert any("own decoder changes kept over the setting's: channels=24 (setting: 16)" in line for line in said)


def test_the_setting_still_narrows_what_a_variant_does_not_change(tmp_path):
    register_variant("lw_crp1", VARIANT, crp_stages=1)
    (net,) = trained_set(TINY, variants=["lw_crp1"], cache_dir=tmp_path, progress=False, say=None, workers=1)
    assert (net.model.spec.channels, net.model.spec.top_channels, net.model.spec.crp_stages) == (16, 32, 1)
    assert net.record["decoder_changes"]["kept_over_setting"] == {}


# --- problem 7: trained_set's arguments ----------------------------------------------------------------------------


def test_a_string_of_variants_is_one_name(tmp_path):
    said: list[str] = []
    nets = trained_set(TINY, variants=VARIANT, seeds=[0, 0], cache_dir=tmp_path, progress=False, say=said.append,
                       workers=1)
    assert [(n.record["variant"], n.record["seed"]) for n in nets] == [(VARIANT, 0)]  # one name, one seed
    assert any("seed(s) 0 given more than once; each is trained once" in line for line in said)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"seeds": []}, UsageError, "seeds is an empty list"),
    ({"seeds": "3"}, UsageTypeError, "seeds must be a count"),
    ({"seeds": 10**11}, UsageError, "seeds must be an integer <= 1000"),
    ({"seeds": [-1]}, UsageError, "seed must be an integer >= 0"),
    ({"variants": []}, UsageError, "variants is an empty list"),
    ({"variants": 3}, UsageTypeError, "variants must be a variant name or a list"),
    ({"variants": "l"}, UsageError, "unknown model 'l'"),
])
def test_bad_trained_set_arguments_are_refused_before_any_data_is_read(kwargs, error, words, monkeypatch):
    import analysis.networks.sets as sets_module

    monkeypatch.setattr(sets_module, "load_data", _no_training)
    with pytest.raises(error, match=words):
        trained_set(TINY, progress=False, say=None, **kwargs)


# --- problem 11: one lock per entry, permissions -------------------------------------------------------------------


def test_a_second_run_waits_for_the_held_lock_then_reuses_the_network(base, data, tmp_path, monkeypatch):
    """Another process holds the entry's lock (here a raw flock on its lock file, as a training run holds it): the
    call must wait, not train, and once the holder has written the network and let go, load it and say so."""
    import shutil

    cache = tmp_path / "cache"
    folder = cache / base.path.name
    lock = train_module.lock_path(folder)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setattr(loop_module, "fit", _no_training)
    said: list[str] = []
    result: dict = {}

    def second():
        try:
            result["net"] = train_network(VARIANT, data, TINY_SCHEDULE, 0, decoder=NARROW, cache_dir=cache,
                                          progress=False, say=said.append)
        except BaseException as err:  # noqa: BLE001 - reported below
            result["error"] = err

    thread = threading.Thread(target=second)
    try:
        thread.start()
        thread.join(1.5)
        assert thread.is_alive(), f"did not wait for the lock: {result}"
        assert any("waiting for it" in line for line in said)
        shutil.copytree(base.path, folder)  # what the holder writes before it lets go
    finally:
        os.close(fd)  # releases the lock
    thread.join(30)
    assert not thread.is_alive() and "error" not in result, result
    net = result["net"]
    assert net.cached and net.path == folder and _same_weights(net.model, base.model)
    assert any("trained by another process while this one waited" in line for line in said)


def test_two_identical_runs_at_once_train_once(data, tmp_path, monkeypatch):
    calls = []
    real = loop_module.fit

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # long enough for the other run to reach the lock
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", counted)
    nets: list = [None, None]

    def run(i):
        nets[i] = train_network(VARIANT, data, TINY_SCHEDULE, 0, decoder=NARROW, cache_dir=tmp_path, progress=False)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1
    assert sorted(n.cached for n in nets) == [False, True] and _same_weights(nets[0].model, nets[1].model)


def test_cache_files_and_folders_are_readable_by_others_under_umask_022(data, tmp_path):
    old = os.umask(0o022)
    try:
        net = train_network(VARIANT, data, TINY_SCHEDULE, 0, decoder=NARROW, cache_dir=tmp_path / "c",
                            progress=False)
    finally:
        os.umask(old)
    assert net.path.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in net.path.iterdir()} == {"model.pt": 0o644,
                                                                              "record.json": 0o644}
    assert train_module.lock_path(net.path).stat().st_mode & 0o777 == 0o644


# --- problem 9: the project's own checkpoints load where a checkpoint is accepted ----------------------------------


def test_a_cached_checkpoint_loads_as_its_record_says(base):
    from analysis.probes.run import checkpoint_model

    model = checkpoint_model(VARIANT, base.path / "model.pt", base.record["num_classes"])
    assert (model.spec.channels, model.spec.top_channels) == (16, 32)  # the name alone builds 256 / 512
    assert _same_weights(model, base.model)


def test_a_cached_checkpoint_under_another_family_is_one_line(base, capsys):
    with pytest.raises(DataError, match="was trained as rf_lw:resnet18"):
        from analysis.networks import checkpoint_decoder

        checkpoint_decoder("rf:resnet18", base.path / "model.pt")
    assert analysis_main(["probes", "--checkpoint", f"rf:resnet18={base.path / 'model.pt'}", "--tiny"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "name it rf_lw:resnet18=" in line


# --- issue 32: what addresses a network -------------------------------------------------------------------------


def test_the_paper_paths_end_and_rf_lw50_are_one_cache_entry(data):
    """paper.5 (RF-50 with every change of the paper's path) resolves to LW-50's architecture: one network."""
    from bench.ablations import SPECS, load_ablation

    spec = load_ablation(SPECS / "paper-path.toml")
    assert spec.variant("paper.5").hash == spec.variant("rf_lw50").hash
    entries = {name: train_module.lookup(name, data, TINY_SCHEDULE, 0, "cpu", NARROW)[0]
               for name in ("paper.5", "rf_lw50", "paper.4")}
    assert entries["paper.5"] == entries["rf_lw50"] != entries["paper.4"]


def test_a_backbone_checkpoint_is_part_of_the_key(base, data, tmp_path, monkeypatch, capsys):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    net = train_network(VARIANT, data, TINY_SCHEDULE, 0, decoder=NARROW, cache_dir=base.path.parent,
                        progress=False, backbone_weights=weights)
    assert not net.cached and net.path != base.path
    assert net.record["backbone_weights"] == store_module._file_digest(weights)
    start = torchvision.models.resnet18()
    start.load_state_dict(torch.load(weights, weights_only=True))
    assert not torch.equal(net.model.backbone.body.conv1.weight, start.conv1.weight)  # trained from there ...
    (tmp_path / "not.pth").write_text("x")
    for path, words in ((tmp_path / "not.pth", "cannot read checkpoint"), (tmp_path, "is a folder, not a file")):
        assert analysis_main(["train", VARIANT, "--setting", "cpu", "--backbone-checkpoint", str(path)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and words in line


def test_a_worker_process_that_retrains_says_why(tmp_path):
    import json

    names = [VARIANT, "rf:resnet18"]
    first = trained_set(TINY, variants=names, cache_dir=tmp_path, progress=False, say=None, workers=1)
    for net in first:  # both edited: both retrain, in two worker processes
        record_path = net.path / "record.json"
        record = json.loads(record_path.read_text())
        record["val_miou"] = 0.99
        record_path.write_text(json.dumps(record))
    said: list[str] = []
    second = trained_set(TINY, variants=names, cache_dir=tmp_path, progress=False, say=said.append, workers=2)
    assert any("training 2 networks in 2 processes" in line for line in said)
    for name in names:
        assert any(f"{name} seed 0: retrained: " in line and "was edited" in line for line in said), said
    assert not any(n.cached for n in second)


def test_networks_the_guard_stops_in_worker_processes_are_neither_cached_nor_retrained_here(tmp_path, monkeypatch):
    from analysis.networks import IncompleteTraining

    stalled = dataclasses.replace(TINY_SCHEDULE, max_steps=50, eval_every=25, budget_min=1e-6)
    calls = []
    real = loop_module.fit
    monkeypatch.setattr(loop_module, "fit", lambda *a, **k: calls.append(1) or real(*a, **k))  # this process only
    with pytest.raises(IncompleteTraining) as err:
        trained_set(TINY, variants=[VARIANT, "rf:resnet18"], schedule=stalled, cache_dir=tmp_path, progress=False,
                    say=None, workers=2)
    assert sorted(r["variant"] for r in err.value.records) == ["rf:resnet18", VARIANT]
    assert all(r["complete"] is False and r["stop_reason"] == "budget" for r in err.value.records)
    assert calls == []  # not trained again in the caller
    assert not [p for p in tmp_path.iterdir() if p.name not in (".locks", ".partial", "synthetic-voc")]


def test_a_cached_checkpoint_loads_under_another_name_of_its_architecture(data, tmp_path):
    """Trained as an alias of another family's label (RF's path to LW ends in LW's architecture): the checkpoint
    loads under the built-in name of that architecture, which then needs no changes."""
    from analysis.networks import checkpoint_decoder
    from analysis.probes.run import checkpoint_model

    register_variant("rf_to_lw", "rf:resnet18", crp_kernel=1, fusion_kernel=1, rcu="none", rcu_in=0, rcu_out=0,
                     dropout=0.0)
    net = train_network("rf_to_lw", data, TINY_SCHEDULE, 0, cache_dir=tmp_path, progress=False)
    assert net.record["architecture"] == store_module.identity(VARIANT, data, TINY_SCHEDULE, 0, "cpu", None,
                                                               tmp_path)[1]["architecture"]
    assert checkpoint_decoder(VARIANT, net.path / "model.pt")[0] == {}
    assert _same_weights(checkpoint_model(VARIANT, net.path / "model.pt", net.record["num_classes"]), net.model)


def test_probes_seeds_are_bounded_as_trains(capsys):
    assert analysis_main(["probes", "--seeds", "100000000000"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "error: --seeds must be an integer <= 1000, got 100000000000"
