"""A setting is data: the named settings are TOML files read and checked like an ablation spec, and a user's own
setting file trains through the same API and CLI. Bad keys and values name the file, the key and the choices."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from analysis.cli import main as analysis_main
from analysis.datasets.synthetic import SyntheticSpec
from analysis.networks import SETTINGS, Schedule, network_setting
from analysis.networks.pretrain import Pretrain
from analysis.networks.settings import SETTINGS_DIR, load_setting
from bench.errors import DataError, MissingFileError, UsageError, UsageTypeError

from .test_networks import _no_training

TINY = """
description = "a tiny test setting"
device = "cpu"
seeds = 1
backbone = "resnet18"
families = ["rf_lw"]

[decoder]
channels = 16
top_channels = 32

[schedule]
size = 64
max_steps = 2
eval_every = 1
batch_size = 4
warmup_steps = 1

[data]
n_train = 8
n_val = 4
n_test = 4
size = 64
radius = [4, 14]
"""


def test_every_named_setting_is_a_file_and_reads_back_as_written():
    assert sorted(SETTINGS) == sorted(p.stem for p in SETTINGS_DIR.glob("*.toml")) == ["cpu", "gpu"]
    for name, setting in SETTINGS.items():
        raw = tomllib.loads((SETTINGS_DIR / f"{name}.toml").read_text())
        assert setting.name == name and setting.device == raw["device"] and setting.seeds == raw["seeds"]
        assert dataclasses.asdict(setting.schedule) == {**dataclasses.asdict(Schedule()), **raw["schedule"]}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["data"].items()}
        assert setting.data == SyntheticSpec(**data)
        assert setting.pretrain == Pretrain(**raw["pretrain"])
        assert (setting.decoder or {}) == raw.get("decoder", {})


def _write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("edit, error, words", [
    (("seeds = 1", "seedz = 1"), UsageError, "unknown key seedz (did you mean 'seeds'?); valid: description"),
    (("max_steps = 2", "max_step = 2"), UsageError, "unknown key schedule.max_step (did you mean 'max_steps'?)"),
    (("max_steps = 2", "max_steps = 0"), UsageError, "schedule: max_steps must be an integer >= 1, got 0"),
    (("channels = 16", "chanels = 16"), UsageError, "unknown key decoder.chanels (did you mean 'channels'?)"),
    (("channels = 16", "channels = 0"), UsageError, "decoder.channels"),
    (('families = ["rf_lw"]', 'families = ["rf_light"]'), UsageError, "rf_light"),
    (('families = ["rf_lw"]', "families = []"), UsageTypeError, "families must be a non-empty list"),
    (("radius = [4, 14]", "radius = 4"), UsageTypeError, "data.radius must be a pair"),
    (("radius = [4, 14]", "radius = [6, 4]"), UsageError, "data.radius[1] must be an integer >= 6"),
    (("n_val = 4", "n_val = 0"), UsageError, "data.n_val must be an integer >= 1"),
    (('device = "cpu"', 'device = "tpu"'), UsageError, "unknown device 'tpu'; valid: cpu, cuda, cuda:N"),
    (("seeds = 1", "seeds = 1.5"), UsageTypeError, "seeds must be an integer"),
])
def test_a_bad_setting_file_names_the_file_the_key_and_the_choices(tmp_path, edit, error, words):
    path = _write(tmp_path, TINY.replace(*edit))
    with pytest.raises(error) as caught:
        load_setting(path)
    assert str(caught.value).startswith(f"{path}: ") and words in str(caught.value)


def test_a_file_that_is_not_toml_or_not_there_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not valid TOML"):
        load_setting(_write(tmp_path, "seeds = [1,"))
    with pytest.raises(MissingFileError, match="setting file not found: .*named settings: cpu, gpu"):
        network_setting(str(tmp_path / "absent.toml"))


def test_a_users_setting_file_trains_from_the_cli_and_is_named_by_its_stem(tmp_path, capsys):
    path = _write(tmp_path, TINY, "tiny.toml")
    setting = network_setting(str(path))
    assert setting.name == "tiny" and setting.variants() == ["rf_lw:resnet18"] and setting.pretrain is None
    assert setting.data.n_test == 4 and setting.description == "a tiny test setting"
    args = ["train", "--setting", str(path), "--cache", str(tmp_path / "cache"), "--json"]
    assert analysis_main(args) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)
    assert row["setting"] == "tiny" and row["steps"] == 2 and 0 <= row["test_miou"] <= 1


def test_a_bad_setting_file_on_the_cli_is_one_line_and_exit_2_before_any_data_is_read(tmp_path, capsys,
                                                                                      monkeypatch):
    import analysis.networks.sets as sets_module

    monkeypatch.setattr(sets_module, "load_data", _no_training)
    path = _write(tmp_path, TINY.replace("eval_every = 1", "eval_evry = 1"))
    assert analysis_main(["train", "--setting", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "unknown key schedule.eval_evry (did you mean 'eval_every'?)" in line


def test_a_pretrain_table_says_its_task_and_refuses_a_decoder_for_a_classification(tmp_path):
    setting = load_setting(_write(tmp_path, TINY + '\n[pretrain]\ntask = "classification"\nseed = 3\n'))
    assert setting.pretrain == Pretrain(task="classification", decoder={}, seed=3)
    with pytest.raises(UsageError, match="belong to task = \"segmentation\""):
        load_setting(_write(tmp_path, TINY + '\n[pretrain]\ntask = "classification"\ndecoder = { crp_stages = 0 }\n'))
    with pytest.raises(UsageError, match="pretrain.task.*valid: segmentation, classification"):
        load_setting(_write(tmp_path, TINY + '\n[pretrain]\ntask = "imagenet"\n'))


def test_a_pretrain_table_may_fix_its_own_step_limit(tmp_path):
    """pretrain.max_steps: the shared backbone's own step limit, whatever longer the compared networks train (the
    multiverse's twice-the-steps recipe starts from one backbone), and never more than their own limit (a --steps
    bounds every training a command starts); a bad value names the key."""
    from dataclasses import replace

    setting = load_setting(_write(tmp_path, TINY + "\n[pretrain]\nmax_steps = 7\n"))
    assert setting.pretrain.max_steps == 7 and setting.schedule.max_steps == 2
    assert setting.pretrain.schedule(setting.schedule).max_steps == 2
    assert setting.pretrain.schedule(replace(setting.schedule, max_steps=100)).max_steps == 7
    assert load_setting(_write(tmp_path, TINY + "\n[pretrain]\n")).pretrain.max_steps is None
    with pytest.raises(UsageError, match="pretrain.max_steps"):
        load_setting(_write(tmp_path, TINY + "\n[pretrain]\nmax_steps = 0\n"))
