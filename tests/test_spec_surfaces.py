"""Issue 31, the spec side: one validation path for variant names and changes (register_variant, ablation specs,
the CLI), bounds on what a spec expands to, the ablation report over a whole spec from exactly its own records, and
the wording of a missing image and of the probes figure where label accuracy is not informative."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import InputError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# --- names and changes: register_variant ---------------------------------------------------------------------------


def test_register_variant_is_importable_from_bench():
    import bench
    from bench.models import register_variant

    assert bench.register_variant is register_variant and "register_variant" in bench.__all__


@pytest.mark.parametrize("name, message", [
    ("x" * 300, "is 300 characters; at most 64"),
    ("x" * 5000, "is 5000 characters; at most 64"),
    ("x" * 65, "is 65 characters; at most 64"),
    ("rf", "is a decoder family's name"),
    ("rf_lw_rcu", "is a decoder family's name"),
    ("resnet18", "is a backbone's name"),
    ("rf_lw50", "already registered"),
    ("a b", "letters, digits"),
])
def test_register_variant_refuses_names_that_cannot_be_variants(name, message):
    from bench import register_variant
    from bench.models import list_models

    with pytest.raises(UsageError, match=message) as info:
        register_variant(name, "rf_lw:resnet18", crp_stages=2)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400  # one line, never the whole 5000 characters
    assert name not in list_models(include_backbones=False) or name == "rf_lw50"


def test_a_64_character_name_is_a_variant():
    from bench import create_model, register_variant

    name = "v" * 64
    register_variant(name, "rf_lw:resnet18", crp_stages=2)
    assert create_model(name, num_classes=2).decoder.spec.crp_stages == 2


@pytest.mark.parametrize("base, changes", [
    ("rf_lw:resnet18", {}),  # no change at all
    ("rf_lw50", {"crp_stages": 4}),  # what the base already has
    ("rf_lw50", {"rcu_in": 2}),  # RCU counts without an RCU kind: builds the same network
    ("rf_lw50", {"rcu": "bottleneck"}),  # an RCU kind with no RCUs
])
def test_register_variant_refuses_changes_that_change_nothing(base, changes):
    from bench import register_variant

    with pytest.raises(UsageError, match="no change|change nothing"):
        register_variant("t_same", base, **changes)


def test_effective_spec_equality_is_equality_of_the_network_built():
    """The no-change rule stands on this: equal effective specs build the same modules, unequal ones do not."""
    from bench import create_model
    from bench.models import decoder_spec
    from bench.models.registry import effective_spec

    plain = decoder_spec("rf_lw:resnet18")

    def shapes(**changes):
        model = create_model("rf_lw:resnet18", num_classes=3, decoder=changes or None)
        return [(n, tuple(p.shape)) for n, p in model.named_parameters()]

    assert effective_spec(plain.with_changes(rcu_in=3, rcu_out=1)) == effective_spec(plain)
    assert shapes(rcu_in=3, rcu_out=1) == shapes()
    assert effective_spec(plain.with_changes(rcu="bottleneck", rcu_in=1)) != effective_spec(plain)
    assert shapes(rcu="bottleneck", rcu_in=1) != shapes()


# --- the same rules in a spec, and the CLI ----------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text('sizes = ["64x64"]\nnum_classes = 3\n' + text)
    return path


def test_a_spec_variant_may_be_based_on_another_in_any_order(tmp_path):
    from bench.ablations import load_ablation
    from bench.models import variant_info

    spec = load_ablation(_write(tmp_path, "chain", """
[variants.c2]
base = "c1"
decoder.crp_pool_kernel = 3
[variants.c1]
base = "rf_lw:resnet18"
decoder.crp_stages = 2
"""))
    c2 = spec.variant("c2")
    assert c2.base == "rf_lw:resnet18" and dict(c2.changes) == {"crp_stages": 2, "crp_pool_kernel": 3}
    assert variant_info("c2").decoder_spec.crp_stages == 2  # registered, one level from its built-in root


@pytest.mark.parametrize("text, message", [
    ('[variants.l1]\nbase = "l2"\ndecoder.crp_stages = 2\n[variants.l2]\nbase = "l1"\ndecoder.crp_stages = 3\n',
     r"the bases loop \(l1 -> l2 -> l1\)"),
    ('[variants.n0]\nbase = "rf_lw:resnet18"\n', "gives no change of its base"),
    ('[variants.n1]\nbase = "rf_lw:resnet18"\ndecoder.rcu_in = 2\n', "change nothing"),
    ('[variants.rf]\nbase = "rf_lw:resnet18"\ndecoder.crp_stages = 2\n', "decoder family's name"),
    (f'[variants.{"w" * 80}]\nbase = "rf_lw:resnet18"\ndecoder.crp_stages = 2\n', "at most 64"),
    ('[grids.g]\nbase = "rf_lw:resnet18"\nproduct.crp_stages = [1, 2]\nexclude = [{crp_stages = 3}]\n',
     r"exclude entry \{'crp_stages': 3\} matches no point"),
    ('[grids.g]\nbase = "rf_lw:resnet18"\nproduct.crp_stages = [1, 2]\n'
     'exclude = [{crp_stages = 1}, {crp_stages = 2}]\n', "removes every point"),
    ('[grids.g]\nbase = "rf_lw:resnet18"\nproduct.crp_stages = [1, 4]\n',
     r"point 'g.crp_stages-4' is 'rf_lw:resnet18' itself .*exclude = \[\{crp_stages = 4\}\]"),
    ('[grids.g]\nbase = "rf_lw:resnet18"\nproduct.channels = [' + ", ".join(map(str, range(8, 1100))) + "]\n",
     "has 1092 points; a spec may resolve to at most 1000"),
    ('[paths.p]\nstart = "rf:resnet18"\nsteps = [{crp_kernel = 1}, {crp_kernel = 3}]\n',
     r"returns to 'rf:resnet18', an earlier variant of the path"),
    ('[paths.p]\nstart = "rf_lw:resnet18"\nsteps = [{rcu = "bottleneck"}, {rcu_in = 1}]\n',
     r"steps\[1\] changes nothing"),
    ("", "defines no variants"),
])
def test_spec_refuses_what_register_variant_refuses_and_what_selects_nothing(tmp_path, text, message):
    from bench.ablations import load_ablation

    path = _write(tmp_path, "bad", text)
    with pytest.raises(InputError, match=message) as info:
        load_ablation(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_huge_grid_is_refused_before_a_point_is_made(tmp_path):
    from bench.ablations import load_ablation

    axes = "\n".join(f"product.{axis} = [{', '.join(map(str, range(1, 40, 2)))}]"
                     for axis in ("crp_kernel", "fusion_kernel", "classifier_kernel", "crp_pool_kernel"))
    path = _write(tmp_path, "huge", f'[grids.h]\nbase = "rf_lw:resnet18"\n{axes}\n')  # 20^4 = 160,000 points
    start = time.perf_counter()
    with pytest.raises(UsageError, match="has 160000 points"):
        load_ablation(path)
    assert time.perf_counter() - start < 2.0


def test_repeated_grid_values_are_measured_once_with_a_note(tmp_path, capsys):
    from bench.ablations import load_ablation
    from bench.cli import main

    path = _write(tmp_path, "rep", '[grids.r]\nbase = "rf_lw:resnet18"\nproduct.crp_stages = [1, 2, 1]\n')
    spec = load_ablation(path)
    assert [v.name for v in spec.variants if v.group == "grid r"] == ["r.crp_stages-1", "r.crp_stages-2"]
    assert len(spec.notes) == 1 and "crp_stages lists 1 more than once" in spec.notes[0]
    assert main(["ablate", str(path), "--print"]) == 0
    assert "note: " in capsys.readouterr().out


def test_a_spec_with_no_variants_is_one_line_and_exit_2_from_the_cli(tmp_path):
    path = _write(tmp_path, "nothing", "")
    for extra in (["--print"], ["--out", str(tmp_path / "o")]):
        result = _cli("-m", "bench", "ablate", str(path), *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "no variants" in result.stderr
    assert not (tmp_path / "o").exists()


# --- the ablation report: the whole spec, exactly its records ---------------------------------------------------

TWO_PATHS = """
[paths.a]
start = "rf:resnet18"
steps = [{{crp_kernel = 1}}, {{fusion_kernel = 1}}]
[paths.b]
start = "rf_lw:resnet18"
steps = [{{crp_stages = 2}}]
[grids.g]
base = "rf_lw:resnet18"
product.crp_pool_kernel = [3, 7]
[variants.v]
base = "rf_lw:resnet18"
decoder.crp_stages = {stages}
"""


def _run(spec_file: Path, out: Path):
    from bench.ablations import load_ablation, run_ablation

    spec = load_ablation(spec_file)
    status = run_ablation(spec, out, measure=("complexity",), executor="debug", progress=None)
    assert not status.failed and not status.left
    return spec


def _flops(name: str, size: int = 64) -> int:
    from bench.complexity import count_ops
    from bench.models import meta_model

    return int(count_ops(meta_model(name, 3), size, size).frame()["paper_flops"].sum())


def test_report_covers_every_path_variant_and_grid(tmp_path):
    from analysis.report.ablation import report

    spec_file = _write(tmp_path, "two", TWO_PATHS.format(stages=1))
    spec = _run(spec_file, tmp_path / "out")
    written = {p.name for p in report(spec_file, tmp_path / "out", tmp_path / "rep", say=None)}
    assert {"paper_path.md", "paper_path_waterfall.png", "path_b.md", "path_b_waterfall.png", "variants.md",
            "grid_axes.md"} <= written
    import pandas as pd

    table = pd.read_csv(tmp_path / "rep" / "variants.csv")
    assert set(table.variant) == {v.name for v in spec.variants}  # every variant, grid point and base
    by_name = table.set_index("variant")
    assert by_name.loc["v", "paper_flops"] == _flops("v")
    b = pd.read_csv(tmp_path / "rep" / "path_b.csv")
    assert list(b.variant) == ["rf_lw:resnet18", "b.1"] and b.paper_flops.iloc[1] == _flops("b.1")


def test_a_grid_only_spec_is_reported(tmp_path):
    from analysis.report.ablation import report

    spec_file = _write(tmp_path, "gridonly", '[grids.go]\nbase = "rf_lw:resnet18"\nproduct.crp_stages = [1, 2]\n')
    _run(spec_file, tmp_path / "out")
    written = {p.name for p in report(spec_file, tmp_path / "out", tmp_path / "rep", say=None)}
    assert "variants.md" in written and "grid_axes.md" in written and not any("path" in n for n in written)


def test_report_after_a_spec_edit_reads_the_new_records_and_names_the_old(tmp_path):
    """The same name 'v' measured twice into one --out, before and after an edit of what it builds: the report
    reads the record of the spec it is given (by configuration hash), whatever order the files sort in."""
    import pandas as pd

    from analysis.report.ablation import report
    from bench.models import registry

    out = tmp_path / "out"
    old_file = _write(tmp_path, "edit", TWO_PATHS.format(stages=1))
    _run(old_file, out)
    old_flops = _flops("v")
    registry._REGISTRY.pop("v")  # a new process: the edited spec registers 'v' afresh
    new_file = _write(tmp_path, "edit", TWO_PATHS.format(stages=3))
    _run(new_file, out)
    said: list[str] = []
    report(new_file, out, tmp_path / "rep", say=said.append)
    row = pd.read_csv(tmp_path / "rep" / "variants.csv").set_index("variant").loc["v"]
    assert row.paper_flops == _flops("v") != old_flops
    assert len(said) == 1 and "1 record(s) not of this spec" in said[0] and "complexity v at 64x64" in said[0]
    assert "Records left out" in (tmp_path / "rep" / "variants.md").read_text()


def test_report_input_problems_exit_2_in_one_line(tmp_path):
    spec_file = _write(tmp_path, "ip", TWO_PATHS.format(stages=1))
    _run(spec_file, tmp_path / "out")
    (tmp_path / "file.txt").write_text("not a folder")
    report_is_a_file = _cli("-m", "analysis", "ablation-report", str(spec_file), str(tmp_path / "out"),
                            "--report", str(tmp_path / "file.txt"))
    # the spec edited after its run (another size): its counts are not there; the previous report stays, said so
    assert _cli("-m", "analysis", "ablation-report", str(spec_file), str(tmp_path / "out")).returncode == 0
    spec_file.write_text(spec_file.read_text().replace('"64x64"', '"96x96"'))
    edited = _cli("-m", "analysis", "ablation-report", str(spec_file), str(tmp_path / "out"))
    for result, words in ((report_is_a_file, "is an existing file, not a folder"),
                          (edited, "holds no counts for"), (edited, "was not updated")):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and words in result.stderr


# --- errors: input is exit 2 in one line, a bug is a traceback and exit 1 -----------------------------------------


def test_an_internal_error_exits_1_with_its_traceback_and_input_errors_exit_2(tmp_path):
    spec_file = _write(tmp_path, "ok", '[variants.ie]\nbase = "rf_lw:resnet18"\ndecoder.crp_stages = 2\n')
    bug = ("import sys, bench.ablations.spec as s\n"
           "def broken(path):\n    return {}['a bug']\n"
           "s.load_ablation = broken\n"
           "from bench.cli import main\nsys.exit(main(['ablate', sys.argv[1], '--print']))\n")
    result = _cli("-c", bug, str(spec_file))
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "KeyError: 'a bug'" in result.stderr
    assert "internal error (KeyError)" in result.stderr and not result.stderr.startswith("error: ")
    bad = _cli("-m", "bench", "ablate", str(tmp_path / "missing.toml"), "--print")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# --- wording: a missing image, the probes figure ------------------------------------------------------------------


def test_a_missing_png_image_is_named_as_every_file_looked_for(tmp_path):
    from PIL import Image

    from analysis.datasets.synthetic import SyntheticSpec, synthetic_voc
    from analysis.datasets.voc import VOCSegmentation
    from bench.errors import MissingFileError

    root = synthetic_voc(SyntheticSpec(n_train=2, n_val=1, size=32, seed=3), cache=tmp_path, progress=None)
    images = next(root.rglob("JPEGImages"))
    for jpg in images.glob("*.jpg"):  # a folder of PNG images
        Image.open(jpg).save(jpg.with_suffix(".png"))
        jpg.unlink()
    first = sorted(images.glob("train_*.png"))[0]
    first.unlink()
    dataset = VOCSegmentation(root, "train", (32, 32))
    with pytest.raises(MissingFileError, match=rf"none of {first.stem}\.jpg, {first.stem}\.jpeg, {first.stem}\.png"):
        dataset[dataset.ids.index(first.stem)]
    assert dataset[1 - dataset.ids.index(first.stem)][0].shape == (3, 32, 32)  # the others read as PNG


def _probe_run(informative: bool):
    from types import SimpleNamespace

    import pandas as pd

    rows = [{"family": f, "level": "level4", "point": p, "miou": 0.3, "miou_ci_low": 0.2, "miou_ci_high": 0.4}
            for f in ("rf", "rf_lw") for p in ("before_rcu", "after_rcu", "after_sum", "after_crp")]
    diffs = pd.DataFrame([{"family": f, "level": "level4", "block": "CRP", "miou": 0.05, "miou_ci_low": 0.01,
                           "miou_ci_high": 0.09, "label_accuracy": 0.02, "label_accuracy_ci_low": -0.01,
                           "label_accuracy_ci_high": 0.05, "paper_miou": float("nan"),
                           "paper_label_accuracy": float("nan")} for f in ("rf", "rf_lw")])
    plan = SimpleNamespace(setting=lambda: SimpleNamespace(backbone="mobilenet_v2", device="cpu"), checkpoints={})
    run = SimpleNamespace(frame=pd.DataFrame(rows), plan=plan, setting="cpu; test",
                          baselines={"miou": 0.1, "label_accuracy": 0.5, "multilabel_informative": float(informative)})
    return run, diffs


@pytest.mark.parametrize("informative", [True, False])
def test_probes_figure_draws_label_accuracy_intervals_only_where_they_inform(informative):
    import matplotlib

    matplotlib.use("Agg")
    from analysis.report.probes import probes_figure

    run, diffs = _probe_run(informative)
    fig = probes_figure(run, diffs)
    label_panel = next(ax for ax in fig.axes if "label accuracy" in ax.get_title())
    texts = " ".join(t.get_text() for t in label_panel.texts)
    assert (len(label_panel.containers) == 2) == informative  # one errorbar per family and block
    assert ("NOT INFORMATIVE" in texts) != informative
    miou_panel = next(ax for ax in fig.axes if ax.get_title() == "What each block adds: mIoU")
    assert len(miou_panel.containers) == 2  # mIoU is drawn either way
    import matplotlib.pyplot as plt

    plt.close(fig)
