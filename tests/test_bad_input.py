"""Every bad input gets one clear line and exit status 2 from the CLIs, and the same words as a
ValueError/TypeError from the Python API; nothing is accepted silently.

The CLI cases call the CLIs' ``main`` in this process (the same code ``python -m`` runs; a few are
also run as real subprocesses at the end), so the whole table costs seconds.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from analysis.cli import main as analysis_main
from bench import create_model, list_models
from bench.cli import main as bench_main
from bench.complexity import complexity
from bench.models.checkpoints import CheckpointError, read_state_dict


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
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--budget", "-1"], "--budget must be a finite number >= 0"),
    ("bench", ["time", "rf_lw50", "--size", "64x64", "--warmup", "-1"], "--warmup must be an integer >= 0"),
    ("bench", ["time", "rf_lw50", "--device", "tpu"], "unknown device 'tpu'"),
    ("bench", ["time", "rf_lw50", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    ("bench", ["time", "rf_lw50", "--device", "cpu", "--cuda-graph"], "cuda_graph needs a CUDA device"),
    ("bench", ["speedup", "rf50", "nonsense"], "unknown model 'nonsense'"),
    ("bench", ["profile", "rf_lw50", "--profile-runs", "0"], "--profile-runs must be an integer >= 1"),
    ("bench", ["models", "notavariant"], "no variant matches 'notavariant'"),
    ("bench", ["models", "--family", "xx"], "invalid choice: 'xx'"),
    ("bench", ["sweep", "missing.toml", "--out", "x"], "sweep spec not found: missing.toml"),
    ("bench", ["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ("analysis", ["report", "nosuchsection"], "unknown report section(s) ['nosuchsection']"),
    ("analysis", ["probes", "--tiny", "--size", "-1"], "size must be an integer >= 32, got -1"),
    ("analysis", ["probes", "--tiny", "--size", "0"], "size must be an integer >= 32, got 0"),
    ("analysis", ["probes", "--tiny", "--size", "16"], "size must be an integer >= 32, got 16"),
    ("analysis", ["probes", "--tiny", "--num-classes", "1"], "num_classes must be an integer >= 2, got 1"),
    ("analysis", ["probes", "--tiny", "--num-classes", "300"], "num_classes must be an integer <= 255"),
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
