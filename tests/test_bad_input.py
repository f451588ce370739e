"""Every bad input gets one clear line and exit status 2 from the CLIs, and the same words as a
ValueError/TypeError from the Python API; nothing is accepted silently.

The CLI cases call the CLIs' ``main`` in this process (the same code ``python -m`` runs; a few are
also run as real subprocesses at the end), so the whole table costs seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from analysis.cli import main as analysis_main
from bench import create_model, list_models
from bench.cli import main as bench_main
from bench.complexity import complexity
from bench.models.checkpoints import CheckpointError, read_state_dict
from bench.sweeps import SPECS


@pytest.fixture
def bad_checkpoints(tmp_path):
    """Files that cannot be read as checkpoints at all."""
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(1000)}, good)
    data = good.read_bytes()
    files = {
        "random": bytes(range(256)) * 8,
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "text": b"101\n",
    }
    for name, content in files.items():
        (tmp_path / f"{name}.pth").write_bytes(content)
    return tmp_path


ZOO = str(SPECS / "zoo.toml")
CLI_CASES = [
    # (which CLI, arguments, words the one line must hold)
    ("bench", ["complexity", "rf_lw50", "--size", "1x1"], "at least 32x32"),
    ("bench", ["complexity", "rf_lw50", "--size", "7x9"], "at least 32x32"),
    ("bench", ["complexity", "rf_lw50", "--size", "64x64", "--batch", "-1"], "--batch must be an integer >= 1, got -1"),
    ("bench", ["complexity", "rf_lw50", "--batch", "0", "--json"], "--batch must be an integer >= 1, got 0"),
    ("bench", ["complexity", "rf_lw50", "--num-classes", "0"], "--num-classes must be an integer >= 1, got 0"),
    ("bench", ["complexity", "rf_lw50", "--num-classes", "-1"], "--num-classes must be an integer >= 1, got -1"),
    ("bench", ["complexity", "rf_lw50", "--size", "\uff15\uff11\uff12x\uff15\uff11\uff12"], "malformed size"),
    ("bench", ["complexity", "rf_lw50", "--batch", "abc"], "invalid int value: 'abc'"),
    ("bench", ["complexity", "rf999"], "unknown model 'rf999'"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--runs", "0"], "--runs must be an integer >= 1, got 0"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--runs", "-3"], "--runs must be an integer >= 1, got -3"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--threads", "-1"], "--threads must be an integer >= 1"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--device", "cpu", "--budget", "-1"], "--budget must be a finite"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--warmup", "-1"], "--warmup must be an integer >= 0"),
    ("bench", ["time", "rf_lw50", "--device", "tpu"], "unknown device 'tpu'"),
    ("bench", ["time", "rf_lw50", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    ("bench", ["time", "rf_lw50", "--device", "cpu", "--cuda-graph"], "cuda_graph needs a CUDA device"),
    ("bench", ["speedup", "rf50", "nonsense"], "unknown model 'nonsense'"),
    # bounds: an integer past int64 is one line, never a C++ overflow
    ("bench", ["complexity", "rf_lw50", "--batch", "99999999999999999999"], "--batch must be an integer <= 65536"),
    ("bench", ["complexity", "rf_lw50", "--num-classes", "99999999999999999999"],
     "--num-classes must be an integer <= 65536"),
    ("bench", ["complexity", "rf_lw50", "--size", "99999999999999999999x64"], "at most 32768x32768"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--batch", "99999999999999999999"], "--batch must be an"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--runs", "99999999999999999999"], "--runs must be an integer <="),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--threads", "99999999999999999999"], "--threads must be an"),
    ("bench", ["profile", "rf_lw50", "--profile-runs", "99999999999999999999"], "--profile-runs must be an integer <="),
    # flags that would do nothing on this device
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--device", "cpu", "--tf32"], "does nothing on device 'cpu'"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--device", "cpu", "--no-tf32"], "does nothing on device 'cpu'"),
    ("bench", ["speedup", "rf50", "rf_lw50", "--device", "cpu", "--cudnn-benchmark"], "does nothing on device 'cpu'"),
    ("bench", ["profile", "rf_lw50", "--device", "cpu", "--cudnn-benchmark"], "cudnn_benchmark (--cudnn-benchmark)"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--device", "cpu", "--runs", "2", "--min-runs", "5"],
     "min_runs (5, --min-runs) is more than runs (2, --runs)"),
    ("bench", ["time", "rf_lw50", "--device", "cuda:x"], "unknown device 'cuda:x'; valid: cpu, cuda, cuda:N"),
    ("bench", ["time", "rf_lw50", "--device", "cuda", "--budget", "5"], "--budget is a CPU setting"),
    ("bench", ["speedup", "rf50", "rf_lw50", "--device", "cuda", "--min-runs", "2"], "--min-runs is a CPU setting"),
    ("analysis", ["sweep-report", "/nowhere/sweep"], "sweep folder not found: /nowhere/sweep"),
    ("bench", ["sweep", ZOO, "--out", "/nowhere/x", "--slurm-partition", "gpu"],
     "--slurm-partition is for --executor slurm and does nothing with --executor local"),
    ("bench", ["sweep", ZOO, "--out", "/nowhere/x", "--workers", "99999999999999999999"],
     "--workers must be an integer <= 4096"),
    ("bench", ["sweep", ZOO, "--out", "/nowhere/x", "--timeout-min", "1e300"], "--timeout-min must be a number <="),
    ("bench", ["profile", "rf_lw50", "--profile-runs", "0"], "--profile-runs must be an integer >= 1"),
    ("bench", ["models", "notavariant"], "no variant matches 'notavariant'"),
    ("bench", ["models", "--family", "xx"], "invalid choice: 'xx'"),
    ("bench", ["sweep", "missing.toml", "--out", "x"], "sweep spec not found: missing.toml"),
    ("bench", ["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ("analysis", ["report", "nosuchsection"], "unknown report section(s) 'nosuchsection'"),
    ("analysis", ["probes", "--tiny", "--size", "-1"], "size must be an integer >= 32, got -1"),
    ("analysis", ["probes", "--tiny", "--size", "0"], "size must be an integer >= 32, got 0"),
    ("analysis", ["probes", "--tiny", "--size", "16"], "size must be an integer >= 32, got 16"),
    ("analysis", ["probes", "--tiny", "--num-classes", "1"], "--num-classes must be an integer >= 2, got 1"),
    ("analysis", ["probes", "--tiny", "--num-classes", "300"], "--num-classes must be an integer <= 255"),
    ("analysis", ["probes", "--tiny", "--seeds", "0"], "seeds must be an integer >= 1, got 0"),
    ("analysis", ["probes", "--tiny", "--families", "xx"], "unknown family 'xx'; valid: rf, rf_lw_rcu, rf_lw"),
    ("analysis", ["probes", "--tiny", "--levels", "level9"], "unknown level 'level9'"),
    ("analysis", ["probes", "--tiny", "--device", "tpu"], "unknown device 'tpu'"),
    ("analysis", ["probes", "--tiny", "--backbone", "resnet_nonesuch"], "unknown model"),
    ("analysis", ["probes", "--tiny", "--voc-root", "/nowhere"], "no VOC2012 segmentation data under /nowhere"),
    ("analysis", ["probes", "--tiny", "--checkpoint", "rf101"], "expected VARIANT=PATH"),
    ("analysis", ["probes", "--tiny", "--checkpoint", "rf101=/nowhere/x.pth"], "checkpoint file not found"),
]


@pytest.mark.parametrize("cli, args, words", CLI_CASES, ids=[" ".join(a) for _, a, _ in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_2(cli, args, words, capsys, tmp_path, monkeypatch):
    import analysis.datasets.synthetic as synthetic

    monkeypatch.setattr(synthetic, "CACHE", tmp_path / "cache")  # nothing may be generated either
    code = (bench_main if cli == "bench" else analysis_main)(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err
    assert not (tmp_path / "cache").exists()  # refused before any data was made


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "text"])
def test_unreadable_checkpoints_are_named(kind, bad_checkpoints, capsys):
    path = bad_checkpoints / f"{kind}.pth"
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: "):
        read_state_dict(path)
    assert analysis_main(["probes", "--tiny", "--checkpoint", f"rf_lw50={path}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot read checkpoint {path}: ") and len(line) < 400
    reason = line.removeprefix(f"error: cannot read checkpoint {path}: ").removesuffix(
        " (not a torch.save file, or truncated)")
    assert len(reason) < 100 or reason.endswith(" ...)")  # a long message is cut between words, and says so
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        create_model("rf_lw50", checkpoint=path)


# --- the Python API: the same checks as exceptions -----------------------------------------------


def test_api_checks_raise_with_the_same_words():
    with pytest.raises(TypeError, match="model name must be a string"):
        create_model(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        create_model("rf_lw50", num_classes=0)
    with pytest.raises(ValueError, match=r"unknown decoder field\(s\) \['width'\]; valid: crp_kernel"):
        create_model("rf_lw50", decoder={"width": 3})
    with pytest.raises(ValueError, match="at least 32x32"):
        complexity(["rf_lw50"], [(1, 1)])
    with pytest.raises(ValueError, match="batch must be an integer >= 1, got 0"):
        complexity(["rf_lw50"], [(64, 64)], batch=0)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        complexity(["nope"], [(64, 64)])
    with pytest.raises(ValueError, match="unknown family 'xx'; valid: rf, rf_lw_rcu, rf_lw"):
        list_models(family="xx")
    from analysis.datasets import VOC_SAMPLE, VOCSegmentation

    with pytest.raises(ValueError, match="size must be at least 32x32"):
        VOCSegmentation(VOC_SAMPLE, "train", (16, 16))


def test_forward_input_checks():
    model = create_model("rf_lw_mbv2").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_taps(x, "logits")  # one name is one tap, not its characters
        assert list(taps) == ["logits"]
        with pytest.raises(TypeError, match="floating-point image batch.*torch.int64"):
            model(torch.zeros(1, 3, 64, 64, dtype=torch.long))
        with pytest.raises(TypeError, match="torch.float32 weights but the input is torch.float16"):
            model(x.half())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(x.bfloat16()).shape[1] == 21  # mixed precision under autocast is fine
        with pytest.raises(ValueError, match="at least one image"):
            model(torch.zeros(0, 3, 64, 64))
        with pytest.raises(ValueError, match=r"expects an image batch of shape \(N, 3, H, W\)"):
            model(torch.zeros(1, 4, 64, 64))


def test_real_entry_points_exit_2_without_a_traceback():
    for args in (["bench", "complexity", "rf_lw50", "--size", "1x1"], ["analysis", "probes", "--size", "16"],
                 ["bench", "models", "notavariant"]):
        proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


# --- sweeps: specs checked as types, broken records named, refusals before anything runs --------------------

SPEC_CASES = [
    # (spec text, words of the one line); each is refused before anything runs
    ('measure = ["complexity"]\nvariants = "rf_lw50"', "'variants' must be a list, got 'rf_lw50' (str); "
                                                       'write variants = ["rf_lw50"]'),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nsizes = "64x64"', 'write sizes = ["64x64"]'),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nbatches = 1', "write batches = [1]"),
    ('measure = "complexity"\nvariants = ["rf_lw50"]', 'write measure = ["complexity"]'),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nbatches = []', "'batches' is empty"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nsizes = []', "'sizes' is empty"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\nmodes = []', "'modes' is empty"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\ndtypes = []', "'dtypes' is empty"),
    ('measure = ["complexity"]\nvariants = []', "'variants' is empty"),
    ('measure = []', "'measure' is empty"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\ntiming_parallel = "yes"', "timing_parallel must be true or false"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\n[timing]\ncompile = 1', "compile must be true or false, got 1"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\n[timing]\nruns = "10"', "runs must be an integer, got '10'"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\n[timing]\ntf32 = true', "does nothing on device 'cpu'"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\n[timing]\nrunz = 3', "(did you mean 'runs'?)"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\n[timing]\nruns = 2\nmin_runs = 5', "min_runs (5, --min-runs)"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\nmodes = ["graph"]', "cuda_graph needs a CUDA device"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\ntiming = 3', "[timing] must be a table"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nbatches = [99999999999999999999]',
     "batches must be an integer <= 65536, got 99999999999999999999"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nnum_classes = 99999999999999999999',
     "num_classes must be an integer <= 65536"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nsizes = ["99999999999999999999x64"]', "at most 32768x32768"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nsizes = [64]', "must be a string HEIGHTxWIDTH"),
    ('measure = ["time"]\nvariants = ["rf_lw50"]\ndevice = "gpu"', "unknown device 'gpu'; valid: cpu, cuda, cuda:N"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\nnum_clases = 3', "(did you mean 'num_classes'?)"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\npairs = [["rf50", "rf_lw50"]]', "has no 'speedup'"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"]\ndtypes = ["bf16"]', "times nothing"),
    ('measure = ["speedup"]\npairs = "rf50"', "'pairs' must be a list"),
    ('measure = ["speedup"]\npairs = [["rf50"]]', "each of 'pairs' must be [BASE, OTHER]"),
    ('measure = ["complexity"]\nvariants = ["rf_lw50"', "not valid TOML"),
]


@pytest.mark.parametrize("text, words", SPEC_CASES, ids=[t.replace("\n", "; ") for t, _ in SPEC_CASES])
def test_bad_sweep_specs_are_one_line_before_anything_runs(text, words, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert bench_main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "debug"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {spec}: ") and words in line, line
    assert not (tmp_path / "out").exists()


def test_repeated_axis_values_are_measured_once_and_the_sweep_finishes(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text('measure = ["complexity", "complexity"]\nvariants = ["rf_lw_mbv2", "rf_lw_mbv*"]\n'
                    'sizes = ["64x64", "64X64", "96x96"]\nbatches = [1, 1]\n')
    args = ["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "debug"]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    for key in ("measure", "variants", "sizes", "batches"):
        assert out.count(f"'{key}' lists") == 1, out  # one note per key, once
    assert "'sizes' lists 64x64 more than once" in out
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 2  # (rf_lw_mbv2) x (64x64, 96x96)
    assert bench_main(args) == 0  # a rerun of a finished sweep: nothing left, exit 0
    assert "done 2 / running 0 / failed 0 / left 0" in capsys.readouterr().out


def _one_record_sweep(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('measure = ["complexity"]\nvariants = ["rf_lw_mbv2"]\nsizes = ["64x64"]\n')
    assert bench_main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "debug"]) == 0
    (record,) = (tmp_path / "out" / "records").glob("*.json")
    return spec, record


@pytest.mark.parametrize("content, words", [
    ("", "is empty"),
    ('{"id": "x", "config": {', "is not valid JSON"),
    ('{"id": "x"}', "lacks key(s) ['config', 'error', 'rows']"),
    ('{"id": "x", "config": {}, "rows": {}, "error": ""}', "wrong type ['rows']"),
    ("[1, 2]", "holds a JSON list"),
    (None, "does not hold the configuration its name says"),  # the real record with its size edited
])
def test_broken_record_files_are_named(content, words, tmp_path, capsys):
    from bench.errors import DataError
    from bench.sweeps import read_records

    spec, record = _one_record_sweep(tmp_path)
    if content is None:
        edited = json.loads(record.read_text())
        edited["config"]["height"] = 96
        content = json.dumps(edited)
    record.write_text(content)
    capsys.readouterr()
    with pytest.raises(DataError, match=f"sweep record {record} "):
        read_records(tmp_path / "out")
    for main, args in ((analysis_main, ["sweep-report", str(tmp_path / "out")]),
                       (bench_main, ["sweep", str(spec), "--out", str(tmp_path / "out")])):
        assert main(args) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: sweep record {record} ") and words in line and "delete" in line, line


def test_sweep_refuses_an_out_file_and_slurm_without_slurm(tmp_path, capsys, monkeypatch):
    from submitit.slurm.test_slurm import mocked_slurm

    from bench.sweeps.runner import slurm_available

    spec = tmp_path / "spec.toml"
    spec.write_text('measure = ["complexity"]\nvariants = ["rf_lw_mbv2"]\nsizes = ["64x64"]\n')
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert bench_main(["sweep", str(spec), "--out", str(taken)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"the sweep folder {taken} is an existing file, not a folder" in line
    with mocked_slurm():
        assert slurm_available()  # submitit's own test double counts as SLURM
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun/sbatch anywhere
    assert not slurm_available()
    assert bench_main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "slurm"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "executor 'slurm' needs a SLURM cluster, but this machine has none" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the timing fails because CUDA is missing: this machine has it")
def test_sweep_report_when_every_timing_configuration_failed(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text('measure = ["complexity", "time"]\nvariants = ["rf_lw_mbv2"]\nsizes = ["64x64"]\n'
                    'device = "cuda"\n[timing]\nruns = 2\n')
    assert bench_main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "debug"]) == 1
    capsys.readouterr()
    assert analysis_main(["sweep-report", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "nothing to draw for 'time': all 1 of its configurations failed" in out
    assert "torch.cuda.is_available() is False" in out
    table = (tmp_path / "out" / "report" / "sweep.csv").read_text()
    assert "torch.cuda.is_available() is False" in table  # the failure is in the table of every record
    assert not (tmp_path / "out" / "report" / "time_vs_macs.png").exists()


# --- the Python API: lists of names, empty lists, bounds, device flags ---------------------------------------


def test_api_lists_bounds_and_device_flags():
    from bench.complexity import block_breakdown, scaling
    from bench.errors import UsageError, UsageTypeError
    from bench.profile import profile_variants
    from bench.speedup import paired_speedup, paired_speedups
    from bench.timing import TimingSettings, time_variants

    (one,) = complexity("rf_lw_mbv2", [(64, 64)])  # one name is one variant, never its letters
    assert one.variant == "rf_lw_mbv2"
    for fn in (lambda: complexity([], [(64, 64)]), lambda: block_breakdown([]),
               lambda: time_variants([], TimingSettings()), lambda: profile_variants([], TimingSettings()),
               lambda: paired_speedups([], TimingSettings())):
        with pytest.raises(UsageError, match="at least one"):
            fn()
    with pytest.raises(UsageTypeError, match=r"sizes must be a list of \(height, width\) pairs such as"):
        complexity("rf_lw50", "64x64")  # type: ignore[arg-type]
    with pytest.raises(UsageTypeError, match=r"got one pair \(64, 64\); write \[\(64, 64\)\]"):
        complexity("rf_lw50", (64, 64))  # type: ignore[arg-type]
    with pytest.raises(UsageTypeError, match="sides must be a list of square input sides"):
        scaling("rf_lw50", 512)  # type: ignore[arg-type]
    with pytest.raises(UsageTypeError, match=r"variants must hold names \(strings\), got 3"):
        complexity(["rf_lw50", 3], [(64, 64)])
    with pytest.raises(UsageTypeError, match="each of pairs must be a"):
        paired_speedups(["rf50"], TimingSettings())
    with pytest.raises(ValueError, match="num_classes must be an integer <= 65536"):
        complexity(["rf_lw50"], [(64, 64)], num_classes=10**20)
    with pytest.raises(ValueError, match="batch must be an integer <= 65536"):
        complexity(["rf_lw50"], [(64, 64)], batch=10**20)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        block_breakdown(["rf_lw50"], 64, 64, num_classes=0)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got 0"):
        paired_speedup("rf_lw_mbv2", "rf_lw_mbv2", TimingSettings(height=64, width=64), n_boot=0)
    with pytest.raises(ValueError, match="level must be a confidence level between 0 and 1"):
        paired_speedup("rf_lw_mbv2", "rf_lw_mbv2", TimingSettings(height=64, width=64), level=95)
    for bad, words in ((dict(tf32=True), "does nothing on device 'cpu'"),
                       (dict(tf32=False), "does nothing on device 'cpu'"),
                       (dict(cudnn_benchmark=True), "does nothing on device 'cpu'"),
                       (dict(runs=2, min_runs=5), r"min_runs \(5, --min-runs\) is more than runs \(2, --runs\)"),
                       (dict(runs=2), r"min_runs \(3, --min-runs\) is more than runs \(2"),
                       (dict(device="cuda:"), "unknown device 'cuda:'"),
                       (dict(threads=10**20), "threads must be an integer <= 4096")):
        with pytest.raises(UsageError, match=words):
            TimingSettings(**bad).validate()
    with pytest.raises(UsageTypeError, match="channels_last must be true or false, got 'yes'"):
        TimingSettings(channels_last="yes").validate()  # type: ignore[arg-type]
    TimingSettings(device="cuda", tf32=False, cudnn_benchmark=True, runs=2).validate(require_device=False)


def test_shape_only_counting_at_large_sizes():
    """At sides that are multiples of 32 every feature map scales with the input, so conv MACs at 8192x8192 are
    exactly (8192/64)^2 times those at 64x64: a closed form no int32/int64 overflow or float rounding survives."""
    small, large = complexity("rf_lw50", [(64, 64), (8192, 8192)])
    assert large.macs == 128**2 * small.macs and large.paper_flops == 128**2 * small.paper_flops
    assert large.macs > 2**40  # trillions: past any 32-bit count


# --- two machines, one name: what tells CPUs apart is in the record and the folder name ---------------------

def _cpuinfo(model: str, flags: str, cores: list[tuple[int, int]]) -> str:
    """/proc/cpuinfo as Linux writes it on x86: one block per logical processor."""
    return "\n\n".join(f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: {model}\nphysical id\t: {p}\n"
                       f"siblings\t: {len(cores)}\ncore id\t\t: {c}\nflags\t\t: fpu sse2 {flags}"
                       for i, (p, c) in enumerate(cores))


def test_two_cpus_with_one_name_get_two_folders():
    from bench.environment import cpu_description, cpu_slug, parse_cpuinfo

    two = [(0, 0), (0, 1)]
    plain = parse_cpuinfo(_cpuinfo("AMD EPYC", "avx avx2 fma", two), machine="x86_64")
    wide = parse_cpuinfo(_cpuinfo("AMD EPYC", "avx avx2 fma avx512f avx512bw avx512_bf16", two), machine="x86_64")
    assert plain.features == ("avx2", "fma") and wide.features == ("avx512_bf16", "avx512f", "avx2", "fma")
    assert cpu_slug(plain) == "cpu-amd-epyc-avx2-2-cores" and cpu_slug(wide) == "cpu-amd-epyc-avx512-2-cores"
    assert cpu_description(wide) == "AMD EPYC (avx512_bf16, avx512f, avx2, fma; 2 cores)"
    amx = parse_cpuinfo(_cpuinfo("Intel(R) Xeon(R) Platinum 8480+", "avx2 fma avx512f amx_tile", two), "x86_64")
    assert cpu_slug(amx) == "cpu-intel-xeon-platinum-8480-amx-2-cores"
    smt = parse_cpuinfo(_cpuinfo("AMD EPYC 7B13", "avx2 fma", [(0, 0), (0, 0), (0, 1), (0, 1)]), "x86_64")
    assert (smt.physical_cores, smt.logical_cores) == (2, 4) and "2 physical / 4 logical cores" in cpu_description(smt)
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n\n"
                        "processor\t: 1\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n",
                        machine="aarch64")
    assert arm.features == ("sve", "asimd") and arm.physical_cores is None
    assert cpu_slug(arm) == "cpu-aarch64-cpu-implementer-0x41-part-0xd40-sve-2-cores"
    assert "2 logical cores" in cpu_description(arm)


def test_the_environment_record_says_what_tells_cpus_apart():
    from bench.environment import cpu_info, describe, device_slug, environment

    env = environment("cpu")
    info = cpu_info()
    assert env["cpu_model"] == info.model and env["cpu_features"] == " ".join(info.features)
    assert env["slug"] == device_slug("cpu") and (info.tier or "cores") in env["slug"]
    assert env["device_name"] in describe(env) and f"{info.logical_cores}" in env["device_name"]
