"""What a stranger's audit of the newest surfaces found (issue 44), each fixed at its mechanism and tested against the
promise: a diverged run is a failure, never kept; a recipe that cannot learn is refused; a folder that cannot be
written is the user's input; --cache holds everything a run writes; an interrupt stops every worker; odd data and
text files are refused in one line or read as meant; a network another process trained is not labelled trained here;
and the messages point the right way."""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.datasets.synthetic import SyntheticSpec
from analysis.datasets.voc import write_voc
from analysis.networks import IncompleteTraining, Schedule, load_data, train_network, trained_set
from bench.errors import DataError, UsageError

TINY = SyntheticSpec(n_train=8, n_val=4, size=64, radius=(4, 14))
SCHEDULE = Schedule(size=64, max_steps=3, eval_every=1, batch_size=4, warmup_steps=1)
NARROW = {"channels": 16, "top_channels": 32}


def _folder(root: Path, n_train: int = 4, n_val: int = 2, background_val: bool = False, k: int = 3) -> Path:
    rng = np.random.default_rng(0)
    images, masks, splits = {}, {}, {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            mask = np.zeros((64, 64), np.uint8)
            if not (split == "val" and background_val):
                for c in range(1, k):
                    top, left = rng.integers(0, 48, 2)
                    mask[top : top + 16, left : left + 16] = c
            images[f"{split}{i}"] = (rng.uniform(0, 60, (64, 64, 3)) + mask[..., None] * 60).clip(0, 255).astype(
                np.uint8)
            masks[f"{split}{i}"] = mask
            splits[split].append(f"{split}{i}")
    write_voc(root, splits, images, masks)
    return root


# --- 1: a diverged run is a failure, never cached; a non-finite checkpoint is refused -----------------------------
def test_a_run_whose_loss_turns_nan_is_a_failure_and_never_cached(tmp_path, monkeypatch):
    import analysis.networks.loop as loop

    data = load_data(TINY, 64, progress=None)
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def diverging(*args, **kwargs):  # the second step's loss is NaN, as an lr of 1e6 gives within a few steps
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 2 else loss

    monkeypatch.setattr(loop.F, "cross_entropy", diverging)
    with pytest.raises(IncompleteTraining, match="diverged .* rf_lw:resnet18 seed 0 at step 2 of 3") as err:
        train_network("rf_lw:resnet18", data, SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False)
    assert err.value.records[0]["stop_reason"] == "diverged" and err.value.records[0]["complete"] is False
    assert not [p for p in tmp_path.iterdir() if p.name not in (".locks", ".partial", "synthetic-voc")]


def test_a_checkpoint_holding_nan_is_refused_wherever_a_checkpoint_is_read(tmp_path, capsys):
    from bench.models.checkpoints import CheckpointError, read_state_dict

    path = tmp_path / "diverged.pth"
    torch.save({"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="1 of 2 tensors hold NaN or infinite values"):
        read_state_dict(path)
    assert analysis_main(["train", "rf_lw:resnet18", "--backbone-checkpoint", str(path), "--cache",
                          str(tmp_path / "c")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and "NaN" in line


# --- 2: a recipe that cannot learn --------------------------------------------------------------------------------
@pytest.mark.parametrize("field, words", [("lr", "0 means no learning"), ("clip_grad_norm", "clipped to nothing")])
def test_a_setting_that_asks_for_no_learning_is_refused(field, words):
    with pytest.raises(UsageError, match=f"{field} must be a finite number > 0 .*{words}"):
        dataclasses.replace(SCHEDULE, **{field: 0.0}).validate()


def test_a_batch_of_one_is_refused_while_batchnorm_trains_and_so_is_one_training_image(tmp_path):
    with pytest.raises(UsageError, match="batch_size must be an integer >= 2 while BatchNorm trains"):
        dataclasses.replace(SCHEDULE, batch_size=1).validate()
    dataclasses.replace(SCHEDULE, batch_size=1, freeze_bn=True).validate()  # frozen statistics: one image is fine
    one = _folder(tmp_path / "one", n_train=1)
    with pytest.raises(DataError, match="the train split holds 1 image"):
        train_network("rf_lw:resnet18", str(one), SCHEDULE, decoder=NARROW, cache_dir=tmp_path / "c", progress=False)


def test_a_val_split_of_background_only_is_refused(tmp_path):
    root = _folder(tmp_path / "bg", background_val=True)
    with pytest.raises(DataError, match="val split .* labels background only .* cannot pick weights"):
        load_data(str(root), 64, progress=None)


# --- 3, 4: folders a command writes -------------------------------------------------------------------------------
def test_a_folder_that_cannot_be_written_is_the_users_input(tmp_path, capsys):
    from bench.validation import writable_folder

    with pytest.raises(UsageError, match="cannot write to --cache /proc/rfbench-nope"):
        writable_folder("--cache", "/proc/rfbench-nope")
    assert analysis_main(["train", "rf_lw:resnet18", "--cache", "/proc/rfbench-nope"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot write to --cache /proc/rfbench-nope")
    assert not (tmp_path / "made").exists()
    writable_folder("--out", tmp_path / "made" / "deep", make=False)  # tried through its parent, nothing made
    assert not (tmp_path / "made").exists()


def test_cache_holds_the_generated_data_too(tmp_path, monkeypatch):
    import analysis.datasets.synthetic as synthetic
    from analysis.probes.run import TINY_NETWORKS

    monkeypatch.setattr(synthetic, "CACHE", tmp_path / "package-cache")  # where the package would write
    trained_set(TINY_NETWORKS, variants=["rf_lw:resnet18"], seeds=1, cache_dir=tmp_path / "mine", progress=False,
                say=None)
    assert (tmp_path / "mine" / "synthetic-voc").is_dir() and not (tmp_path / "package-cache").exists()


# --- 5: an interrupt stops every worker ---------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found |= {int(p) for p in text.split()}
    return found


def test_sigterm_stops_the_training_and_every_worker_process(tmp_path):
    setting = tmp_path / "slow.toml"
    setting.write_text('backbone = "resnet18"\nfamilies = ["rf", "rf_lw"]\n[decoder]\nchannels = 16\n'
                       'top_channels = 32\n[schedule]\nsize = 64\nmax_steps = 100000\neval_every = 1000\n'
                       'batch_size = 4\n[data]\nn_train = 8\nn_val = 4\nsize = 64\nradius = [4, 14]\n')
    proc = subprocess.Popen([sys.executable, "-m", "analysis", "train", "--setting", str(setting), "--cache",
                             str(tmp_path / "c")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    workers: set[int] = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(workers) < 2:  # the pool's two worker processes, training
        time.sleep(1)
        workers = {c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()} \
            if Path(f"/proc/{proc.pid}").exists() else set()
    assert len(workers) >= 2, proc.stdout.read() if proc.poll() is not None else "workers never started"
    time.sleep(3)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert time.monotonic() - start < 30  # within seconds, not after the running trainings
    time.sleep(1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in
             Path(f"/proc/{w}/stat").read_text().split()[2]]
    assert not alive, f"workers left running: {alive}"
    assert "terminated" in out and "internal error" not in out
    assert not list((tmp_path / "c").glob("resnet18-*"))  # nothing half-written left as a network


# --- 7: probes --checkpoint -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def a_checkpoint(tmp_path_factory):
    from analysis.probes.run import TINY_NETWORKS

    folder = tmp_path_factory.mktemp("ckpt")
    net = trained_set(TINY_NETWORKS, variants=["rf_lw:resnet18"], seeds=1, cache_dir=folder, progress=False,
                      say=None)[0]
    return str(net.path / "model.pt")


@pytest.mark.parametrize("extra, words", [
    ([], "given checkpoints are probed on a VOC-layout folder"),
    (["--seeds", "2"], "--seeds chooses the networks probes trains"),
    (["--families", "rf"], "--families chooses the networks probes trains"),
    (["--backbone", "resnet34"], "--backbone chooses the networks probes trains"),
    (["--checkpoint", "rf_lw:resnet18=CKPT"], "--checkpoint names rf_lw:resnet18 twice"),
])
def test_probes_with_a_checkpoint_refuse_what_they_cannot_do(a_checkpoint, extra, words, capsys, tmp_path):
    extra = [e.replace("CKPT", a_checkpoint) for e in extra]
    code = analysis_main(["probes", "--tiny", "--checkpoint", f"rf_lw:resnet18={a_checkpoint}", *extra, "--out",
                          str(tmp_path / "out")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("error:") and words in line, line


# --- 8: text files ----------------------------------------------------------------------------------------------------
def test_a_bom_is_taken_off_and_a_latin1_file_is_named(tmp_path):
    from analysis.datasets.voc import class_names, listed_ids

    root = _folder(tmp_path / "bom")
    base = root / "VOC2012"
    (base / "classes.txt").write_bytes("\ufeffbackground\r\nsquare\r\ncircle\r\n".encode())
    assert class_names(root) == ("background", "square", "circle")
    split = base / "ImageSets" / "Segmentation" / "val.txt"
    split.write_bytes("val0\nval1\n".encode("latin-1") + "caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="val.txt: not UTF-8 text"):
        listed_ids(split)


def test_split_files_that_differ_only_in_line_endings_and_blank_lines_hash_alike(tmp_path):
    from analysis.networks.data import folder_hash

    root = _folder(tmp_path / "crlf")
    before = folder_hash(root)
    split = root / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    split.write_bytes(split.read_text().replace("\n", "\r\n").encode() + b"\r\n\r\n")
    assert folder_hash(root) == before
    split.write_text("train0\n")  # a real change still changes it
    assert folder_hash(root) != before


# --- 10: who trained a network ----------------------------------------------------------------------------------
def test_a_network_a_worker_found_in_the_store_is_not_labelled_trained_here(tmp_path, monkeypatch):
    from analysis.networks import train as train_module
    from analysis.probes.run import TINY_NETWORKS

    names = ["rf_lw:resnet18", "rf:resnet18"]
    trained_set(TINY_NETWORKS, variants=names, seeds=1, cache_dir=tmp_path, progress=False, say=None, workers=1)
    # as if another process had trained them after this call looked: the workers find them in the store
    real = train_module.lookup
    monkeypatch.setattr(train_module, "lookup", lambda *a, **k: (real(*a, **k)[0], False))
    again = trained_set(TINY_NETWORKS, variants=names, seeds=1, cache_dir=tmp_path, progress=False, say=None,
                        workers=2)
    assert [n.cached for n in again] == [True, True]


# --- 11, 12, 13: words ----------------------------------------------------------------------------------------------
def test_the_shapley_interval_is_cut_as_the_deltas_are():
    from analysis.networks.spec_accuracy import DELTA_RANGE, shapley_accuracy
    from bench.ablations.spec import parse_ablation

    spec = parse_ablation({"paths": {"p": {"start": "rf_lw:resnet18", "steps": [
        {"crp_kernel": 3, "label": "a"}, {"crp_stages": 2, "label": "b"}]}}}, source="test")
    path = spec.paths[0]
    import pandas as pd

    values = {frozenset(): [0.1, 0.9], frozenset({0}): [0.9, 0.1], frozenset({1}): [0.1, 0.9],
              frozenset({0, 1}): [0.9, 0.1]}
    names = {s: n for s, n in path.subsets}
    runs = pd.DataFrame([{"variant": names[s], "seed": i, "miou": v} for s, vs in values.items()
                         for i, v in enumerate(vs)])
    first = shapley_accuracy(path, runs)[0]
    assert (first.low, first.high) == (DELTA_RANGE[0], DELTA_RANGE[1])  # two seeds 160 points apart: cut


def test_a_job_that_ended_without_a_result_names_its_log(tmp_path, capsys):
    from submitit.core.utils import UncompletedJobError

    from analysis.networks.jobs import JobsOutcome, _collect

    class Job:
        job_id = "17"

        class paths:  # noqa: N801 (submitit's attribute)
            stderr = tmp_path / "17_0_log.err"

        def result(self):
            raise UncompletedJobError("Job 17 (task: 0) with path ... has not produced any output (state: TIMEOUT)")

    outcome = JobsOutcome()
    _collect(Job(), {"variant": "rf_lw:resnet18", "seed": 0, "pretrain": False}, outcome, print)
    err = capsys.readouterr().err
    assert "FAILED: rf_lw:resnet18 seed 0: job 17 ended without a result: killed, or over its --timeout-min" in err
    assert "17_0_log.err" in err and outcome.failed


def test_a_setting_file_is_read_by_its_path_whatever_its_suffix(tmp_path):
    from analysis.networks import network_setting

    text = (Path(__file__).resolve().parents[1] / "analysis/networks/named_settings/cpu.toml").read_text()
    for name in ("mine.TOML", "mine"):
        (tmp_path / name).write_text(text)
        assert network_setting(str(tmp_path / name)).schedule.max_steps == 900


def test_num_classes_on_the_generated_data_says_what_it_is_for(capsys, tmp_path):
    assert analysis_main(["train", "rf_lw:resnet18", "--num-classes", "5", "--cache", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--num-classes is for a --data folder; the generated shapes have their own K = 7" in line


def test_a_number_that_is_not_one_is_a_dash_in_a_sentence():
    from analysis.report.probes import percent

    assert percent(math.nan) == "-" and percent(None) == "-" and percent(0.1234) == "12.3%"


def test_tests_that_time_nothing_do_not_depend_on_the_clock():
    """The plain suite's guard tests use a stalled clock or a guard of microseconds, never a real minute budget
    against real work (an overloaded machine cannot flip them)."""
    root = Path(__file__).resolve().parent
    for path in root.glob("test_*.py"):
        text = path.read_text()
        for token in ('"--budget-min", "0.5"', '"--budget-min", "1"', "budget_min=1.0"):
            if token in text:
                assert "_fast_clock" in text, f"{path.name} uses a real time guard ({token})"
