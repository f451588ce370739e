"""Each report section runs end to end at a tiny size and writes whole tables and figures; the front
page's scorecard follows its rules (whole-or-nothing writes: tests/test_atomic_writes.py)."""

from __future__ import annotations

import json

import pandas as pd

from analysis import report
from analysis.report.erf import ERFPlan
from analysis.report.erf import build as build_erf
from analysis.report.files import ScoreRow, Section, markdown_table
from analysis.report.timing import TimingPlan
from analysis.report.timing import build as build_timing
from bench.profile import CATEGORIES


def test_complexity_section_and_front_page(tmp_path):
    status = report.run(["complexity"], out=tmp_path)
    assert status == {"complexity": "ok"}
    t3 = pd.read_csv(tmp_path / "complexity" / "table3_flops.csv")
    assert {"paper", "measured", "diff", "diff_pct", "within_rounding"} <= set(t3.columns)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    front = (tmp_path / "README.md").read_text()
    page = (tmp_path / "complexity" / "README.md").read_text()  # the section's details, one click away
    assert "[Complexity (Tables 1-3)](complexity/README.md)" in front
    for artifact in manifest["complexity"]["artifacts"]:
        assert (tmp_path / artifact["path"]).stat().st_size > 0
        assert f"]({artifact['path'].removeprefix('complexity/')})" in page  # relative to the section's folder
    assert not list(tmp_path.rglob(".*.tmp"))  # no half-written files left behind
    assert front.index("## Scorecard") < front.index("## Sections")  # "what reproduces?" first
    assert "| Table 1 " in front.replace("[Table 1]", "Table 1 ") and "**reproduced**" in front
    assert "*Settings:*" not in front and page.count("*Settings:*") == 1  # one settings footnote per section
    notes = (tmp_path / "complexity" / "table3_flops.md").read_text()
    assert "integers except 9.3 and 11.4" in notes  # computed from the printed values
    assert " nan " not in (tmp_path / "complexity" / "block_breakdown.md").read_text()


def test_failed_section_is_reported_and_others_run(tmp_path, monkeypatch):
    def broken(out):
        raise RuntimeError("no dataset here")

    monkeypatch.setitem(report.SECTIONS, "broken", broken)
    monkeypatch.setitem(report.SECTIONS, "fine", lambda out: Section("a fine section", text="it ran"))
    status = report.run(["broken", "fine"], out=tmp_path)
    assert status["broken"] == "RuntimeError: no dataset here" and status["fine"] == "ok"
    front = (tmp_path / "README.md").read_text()
    assert "failed on its last run" in front and "it ran" in (tmp_path / "fine" / "README.md").read_text()
    assert "no dataset here" in (tmp_path / "broken" / "README.md").read_text()


def test_timing_section_tiny_goes_under_its_device(tmp_path):
    from bench.environment import device_slug

    section = build_timing(tmp_path, TimingPlan.tiny())
    folder = tmp_path / "timing" / device_slug("cpu")
    ratios = pd.read_csv(folder / "table2_speedup.csv")
    assert list(ratios["depth"]) == [50, 101, 152]
    assert ratios["paper_rf_over_lw"].round(2).tolist() == [2.77, 2.22, 1.94]  # from the paper's runtimes
    assert (ratios.ci_low < ratios.ci_high).all()  # an interval from several pairs (its coverage: test_intervals)
    assert all((tmp_path / a.path).exists() for a in section.artifacts)
    runtime = pd.read_csv(folder / "table2_runtime.csv")
    assert "measured / paper" not in " ".join(runtime.columns)  # absolute times are not compared across devices
    fps = pd.read_csv(folder / "fps_512.csv")
    assert set(fps.variant) >= {"rf50", "rf_lw50", "rf_lw_mbv2"} and (fps["fps"] > 0).all()
    assert [s.artifact for s in section.scores] == ["Table 2 (runtimes, RF/LW)", "Abstract FPS (LW/RF at 512)"]
    assert "On CPU" not in section.text and "LW runs" in section.text
    assert "RF-50 has 7.6x LW-50's MACs" in section.text and "What limits LW-50" in section.text  # from the profiles
    profile = pd.read_csv(folder / "profile.csv")
    assert set(CATEGORIES) <= set(profile.columns) and {"rf50", "rf_lw50"} <= set(profile.variant)
    named = profile[[c for c in CATEGORIES if c != "other"]].sum(axis=1)  # ms per pass of the named categories
    assert (named / profile.wall_ms).round(9).tolist() == profile.explained.round(9).tolist()  # on CPU: of the wall
    sweep = (folder / "timing_sweep.md").read_text()
    assert "batch 2 are at 64x64" in sweep and "peak_memory" not in sweep  # footnote from the rows; no empty column


def _as_if_on_a_gpu(results):
    """Tiny CPU results relabelled as graph replays on a CUDA device (times made up from the CPU ones:
    eager 3x the replay), so that write()'s GPU branch runs where CI runs."""
    from dataclasses import asdict, replace

    from analysis.report.timing import TimingResults
    from bench.roofline import math_mode

    old_plan, cuda = results.plan, {"device": "cuda", "cuda_graph": True}
    plan = replace(old_plan, device="cuda", base=replace(old_plan.base, **cuda),
                   fastest=replace(old_plan.fastest, **cuda, dtype="bf16"), quick=replace(old_plan.quick, **cuda))
    for r in results.table2 + results.fps:
        r.mode, r.base_eager_ms, r.other_eager_ms = "graph", 3 * r.base_median_ms, 3 * r.other_median_ms
    for r in results.light + results.sweep:
        r.mode, r.eager_median_ms, r.launch_overhead = "graph", 3 * r.median_ms, 2 / 3
    for r in results.fastest:
        r.fps = 0.5 * next((x.fps for x in results.light if x.variant == r.variant), r.fps)  # slower than default
    mode_of = {}
    for old, new in ((old_plan.base, plan.base), (old_plan.fastest, plan.fastest)):
        size = dict(height=old_plan.profile_size[0], width=old_plan.profile_size[1], cuda_graph=False)
        mode_of[str(asdict(replace(old, **size).resolved()))] = asdict(replace(new, **size).resolved())
    for r in results.profiles:
        r.settings = mode_of[str(r.settings)]
        r.busy_ms, r.wall_ms = sum(r.category_ms.values()), 3 * sum(r.category_ms.values())
        r.idle_share = 2 / 3
    roofs = [replace(results.roofs[0], mode=m) for m in dict.fromkeys(math_mode(s) for s in (plan.base, plan.fastest))]
    env = {**results.environment, "device": "cuda", "device_name": "NVIDIA Test GPU", "slug": "nvidia-test-gpu",
           "cuda": "13.0", "cudnn": "91900"}
    return TimingResults(plan, env, results.table2, results.fps, results.light, results.fastest, results.profiles,
                         roofs, results.sweep, results.macs)


def test_timing_section_gpu_branch_from_records(tmp_path):
    from analysis.report.timing import collect, write

    section = write(_as_if_on_a_gpu(collect(TimingPlan.tiny(), progress=lambda msg: None)), tmp_path)
    folder = tmp_path / "timing" / "nvidia-test-gpu"  # named by the record's device, not this machine's
    runtime = pd.read_csv(folder / "table2_runtime.csv")
    assert runtime["launch_overhead"].round(6).eq(round(2 / 3, 6)).all()  # 1 - replay / eager
    ratios = pd.read_csv(folder / "table2_speedup.csv")
    assert "eager_ratio" in ratios and "eager RF/LW" in (folder / "table2_speedup.md").read_text()
    assert "eager FPS" not in runtime and "FPS (eager)" in (folder / "fps_512.md").read_text()
    sweep = (folder / "timing_sweep.md").read_text()
    assert "launch overhead" in sweep and "GMACs" in sweep
    profile = (folder / "profile.md").read_text()
    assert "kernel ms" in profile and "GPU idle" in profile and "The GPU idles 67% of LW-50's eager pass" in profile
    assert "It is slower than the default mode for" in section.text  # computed: fastest < default here
    assert "CUDA-graph replay" in section.settings and "100 timed passes" not in section.settings


def test_erf_section_small_on_trained_networks(tmp_path):
    section = build_erf(tmp_path, ERFPlan.small())
    grid = pd.read_csv(tmp_path / "erf" / "decoder_grid.csv")
    assert set(grid.variant) == {"rf:resnet18", "rf_lw_rcu:resnet18", "rf_lw:resnet18"}
    assert set(grid.weights) == {"trained", "random init"}  # the architecture's result beside the trained one
    assert (grid["r50_cells"] <= grid["r90_cells"]).all()
    assert all((tmp_path / a.path).exists() for a in section.artifacts)
    claims = pd.read_csv(tmp_path / "erf" / "claims.csv")
    for weights in ("trained", "random init"):
        a = claims[claims.claim.str.startswith("(a)") & (claims.weights == weights)]
        b = claims[claims.claim.str.startswith("(b)") & (claims.weights == weights)]
        assert len(a) == 4 * 2 and len(b) == 4 * 3  # LW-with-RCU and LW against RF at each level; every CRP
        # the printed statuses follow from the printed intervals: (a) no smaller than 0.8 on the 90% CI, (b) wider
        # than one cell (the interpolated side); a sub-cell pair of fields is not testable
        for lo, hi, status in zip(a.ci_low, a.ci_high, a.status, strict=True):
            if status != "not testable here":
                assert status == ("reproduced" if lo >= 0.8 else "not reproduced" if hi < 0.8 else "inconclusive")
        assert list(b.status) == ["reproduced" if lo > 1 else "not reproduced" if hi <= 1 else "inconclusive"
                                  for lo, hi in zip(b.ci_low, b.ci_high, strict=True)]
    units = pd.read_csv(tmp_path / "erf" / "figure8_units.csv")
    assert set(units.network) == {"RefineNet", "LW"} and units.precision.between(0, 1).all()
    fig8 = [s for s in section.scores if s.artifact.startswith("Figure 8")][0]
    assert fig8.status in ("reproduced", "inconclusive", "not reproduced")  # trained class units: testable
    assert "own val mIoU" in section.settings


def test_erf_claims_rest_on_every_seed_asked_for(tmp_path):
    from dataclasses import replace

    section = build_erf(tmp_path, replace(ERFPlan.small(), seeds=2), name="erf/x-2-seeds")
    claims = pd.read_csv(tmp_path / "erf" / "x-2-seeds" / "claims.csv")
    trained = claims.weights == "trained"
    assert set(claims[trained].n_seeds) == {2} and set(claims[~trained].n_seeds) == {0}
    ranks = {s.artifact.split(" ")[0] + " " + s.artifact.split(" ")[1]: s.rank for s in section.scores}
    assert ranks == {"Figure 3": 2, "Section 8": 2, "Figure 8": 1}  # Figure 8 stays on seed 0's networks
    assert "claims (a) and (b) on 2 seeds" in section.title


def test_markdown_prints_a_dash_for_missing_values():
    text = markdown_table(pd.DataFrame({"a": [1.0, float("nan")], "b": ["x", ""]}), labels={"a": "A"})
    assert "| A | b |" in text and "| - | - |" in text and "nan" not in text


# --- the front page (the rules themselves: tests/test_verdicts.py) ---------------------------------------------


def test_front_page_links_every_device_section_and_shows_the_scorecard(tmp_path):
    from analysis.report.front_page import write_pages
    from analysis.verdicts import VERDICT_VERSION

    row = ScoreRow("Table 2 (runtimes, RF/LW)", "2.77", "2.0 (1.9 to 2.1)", "NVIDIA H200", "not reproduced", "slower",
                   "rule", "timing/nvidia-h200/table2_speedup.md", 2.0)
    manifest = {
        "timing/nvidia-h200": {"section": "timing", "title": "Timing on NVIDIA H200", "scores": [vars(row)],
                               "environment": {"device_name": "NVIDIA H200"}, "text": "GPU words", "artifacts": [],
                               "folder": "timing/nvidia-h200", "verdict_version": VERDICT_VERSION},
        "timing/cpu-x": {"section": "timing", "title": "Timing on a CPU", "scores": [], "text": "CPU words",
                         "environment": {"device_name": "CPU"}, "artifacts": [], "folder": "timing/cpu-x",
                         "verdict_version": VERDICT_VERSION},
    }
    write_pages(manifest, tmp_path)
    page = (tmp_path / "README.md").read_text()
    assert "[Timing on NVIDIA H200](timing/nvidia-h200/README.md)" in page
    assert "[Timing on a CPU](timing/cpu-x/README.md)" in page
    assert "**not reproduced**" in page and "[Table 2 (runtimes, RF/LW)](timing/nvidia-h200/table2_speedup.md)" in page
    assert "GPU words" in (tmp_path / "timing" / "nvidia-h200" / "README.md").read_text()  # details one click away
    assert "GPU words" not in page


def test_a_section_on_networks_of_an_earlier_training_version_is_archived(tmp_path):
    """A per-device result is never dropped, but one whose networks an earlier training method made (or that
    predates recorded versions) no longer stands for this code: it leaves the scorecard for the archive, with
    what it said."""
    from analysis.networks.store import TRAINING_VERSION
    from analysis.report.front_page import archive_page, front_page
    from analysis.verdicts import VERDICT_VERSION

    row = ScoreRow("Figure 8", "similar", "0.6", "trained 'cpu' set", "inconclusive", "3 of 6", "rule", "erf/x/f8.md")

    def entry(**extra):
        return {"section": "erf", "title": "ERF", "scores": [vars(row)], "environment": {}, "artifacts": [],
                "verdict_version": VERDICT_VERSION, **extra}

    from analysis.networks.settings import SET_VERSION
    from analysis.protocol import PROTOCOL

    protocol = {"version": PROTOCOL.version, "sha256": PROTOCOL.sha256}
    current = front_page({"erf/x": entry(training_version=TRAINING_VERSION, set_version=SET_VERSION,
                                         protocol=protocol)}, tmp_path)
    assert "| **inconclusive** | 3 of 6 |" in current and "[archive](archive.md)" not in current
    for old in (entry(training_version=TRAINING_VERSION - 1, set_version=SET_VERSION), entry(),
                entry(training_version=TRAINING_VERSION, set_version=SET_VERSION - 1),
                entry(training_version=TRAINING_VERSION),  # before set versions were recorded: version 1
                entry(training_version=TRAINING_VERSION, set_version=SET_VERSION)):  # before protocols were
        # registered: decided under none
        page = front_page({"erf/x": old}, tmp_path)
        assert "| **inconclusive** |" not in page and "no current run" in page and "[archive](archive.md)" in page
        archive = archive_page({"erf/x": old})
        version = (f"this code is version {TRAINING_VERSION}" if old.get("training_version") != TRAINING_VERSION
                   else f"this code's settings are version {SET_VERSION}" if old.get("set_version") != SET_VERSION
                   else PROTOCOL.stamp)
        assert "| inconclusive | 3 of 6 |" in archive and version in archive
    timing = {"section": "timing", "title": "T", "scores": [vars(row)], "environment": {}, "artifacts": [],
              "verdict_version": VERDICT_VERSION}
    assert "| **inconclusive** |" in front_page({"timing/x": timing}, tmp_path)  # no trained networks: never archived


def test_a_run_records_the_training_version_of_the_sections_on_trained_networks(tmp_path, monkeypatch):
    from analysis.networks.store import TRAINING_VERSION

    for name in ("erf", "complexity"):
        monkeypatch.setitem(report.SECTIONS, name, lambda out, n=name: Section(n, text=f"{n} ran"))
    assert report.run(["erf", "complexity"], out=tmp_path, device="cpu") == {"erf": "ok", "complexity": "ok"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (erf_key,) = [k for k in manifest if k.startswith("erf/")]
    from analysis.networks.settings import SET_VERSION

    assert manifest[erf_key]["training_version"] == TRAINING_VERSION
    assert manifest[erf_key]["set_version"] == SET_VERSION
    assert "training_version" not in manifest["complexity"] and "set_version" not in manifest["complexity"]
    from analysis.protocol import PROTOCOL

    assert manifest[erf_key]["protocol"]["sha256"] == PROTOCOL.sha256 and "protocol" not in manifest["complexity"]


def test_networks_section_tabulates_the_trained_set(tmp_path):
    from analysis.probes.run import TINY_NETWORKS
    from analysis.report.networks import build as build_networks

    section = build_networks(tmp_path, TINY_NETWORKS)
    table = pd.read_csv(tmp_path / "networks" / "networks.csv")
    assert sorted(table.family) == ["rf", "rf_lw", "rf_lw_rcu"] and (table.steps <= 2).all()
    assert table.val_miou.between(0, 1).all() and (tmp_path / "networks" / "learning_curves.png").stat().st_size
    score = section.scores[0]
    # the task's headroom follows from the printed numbers: RefineNet's test mIoU inside the protocol's band
    from analysis.protocol import PROTOCOL

    low, high = PROTOCOL.task["miou"]
    rf = 100 * table[table.family == "rf"].test_miou
    assert score.artifact.startswith("Task headroom")
    assert (score.status == "reproduced") == bool(rf.between(low, high).all() and (100 * table.filter(
        like="iou ").drop(columns="iou background").max().max() <= PROTOCOL.task["class_ceiling"]))
    claims = pd.read_csv(tmp_path / "networks" / "accuracy_claims.csv")
    assert list(claims.n_seeds) == [1, 1, 1]  # LW vs RF, and the saturation's two halves
    assert set(claims.status) <= {"inconclusive", "not testable here"}  # one seed: no verdict
    assert {s.artifact for s in section.scores[1:]} == {"Tables 2-3 (mIoU): LW keeps RF's accuracy",
                                                        "Section 3.3: RCUs saturate in LW, not in RF"}
    growth = pd.read_csv(tmp_path / "networks" / "rcu_share_growth.csv")
    assert set(growth.family) == {"rf", "rf_lw_rcu"} and (growth.share_after > 0).all()
    # the tiny setting zero-inits every branch: no share at initialisation, so no growth is claimed from it
    assert (growth.share_at_init == 0).all() and growth.growth.isna().all()
    again = build_networks(tmp_path, TINY_NETWORKS)  # the second build loads every network from the cache
    assert pd.read_csv(tmp_path / "networks" / "networks.csv").cached.all() and again.title == section.title


def test_timed_sections_run_first_and_the_backbone_pretrains_from_the_last_timed_measurement_on(tmp_path, monkeypatch):
    """A run times before anything trains beside it; the shared backbone pretrains in the background from the moment
    the last timed section says its measurements are over (the ablation's ERF at random init is not timed), else from
    the first shape-only section, of a default CPU run that trains the set, and nowhere else."""
    import torch

    ran, started, threads = [], [], {}
    full = torch.get_num_threads()

    def section(name):
        def build(out, timings_done=None):
            ran.append(name)
            threads[name] = torch.get_num_threads()
            if name == "ablation":  # as the real one: its timed subsets, then its ERF at random init (untimed)
                timings_done()
                ran.append(f"{name} rest")
            return Section(name)
        return build

    for name in ("complexity", "zoo", "timing", "networks", "ablation"):
        monkeypatch.setitem(report.SECTIONS, name, section(name))

    class Started:
        def join(self):
            started.append("joined")

        def is_alive(self):
            return "joined" not in started

    def pretrain(setting):
        started.append((setting.name, list(ran)))
        return Started()

    monkeypatch.setattr("analysis.networks.sets.pretrain_in_background", pretrain)
    report.run(["complexity", "zoo", "timing", "networks", "ablation"], out=tmp_path, device="cpu")
    assert ran == ["timing", "ablation", "ablation rest", "complexity", "zoo", "networks"]
    # once, when the ablation's timed subsets are over, beside its untimed rest, then waited for
    assert started == [("cpu", ["timing", "ablation"]), "joined"]
    # the shape counts leave the pretraining its core; the timed sections and the set have every thread
    assert threads == {"timing": full, "ablation": full, "complexity": max(1, full - 1), "zoo": max(1, full - 1),
                       "networks": full} and torch.get_num_threads() == full
    started.clear(), ran.clear()
    report.run(["ablation", "timing", "zoo", "networks"], out=tmp_path, device="cpu")  # the timing section still
    assert started == [("cpu", ["ablation", "ablation rest", "timing"]), "joined"]  # times: from the shape counts
    started.clear()
    started.clear()
    report.run(["complexity", "timing"], out=tmp_path, device="cpu")  # nothing trains: nothing to pretrain
    report.run(["zoo", "networks"], out=tmp_path, device="cuda")  # a GPU's set trains on the GPU
    report.run(["timing", "networks"], out=tmp_path, device="cpu")  # nothing untimed before the set: it pretrains
    assert started == []


def test_the_complexity_section_counts_built_in_names_whatever_ran_before_it():
    """The bench runs the ablation section (which registers its spec's paper.N names) before complexity."""
    from analysis.report.complexity import collect
    from bench.models import list_models, register_variant

    register_variant("zz_complexity_narrow", "rf_lw50", exist_ok=True, channels=64)
    assert "zz_complexity_narrow" in list_models(include_backbones=False)
    assert "zz_complexity_narrow" not in list_models(include_backbones=False, registered=False)
    assert "zz_complexity_narrow" not in set(collect().records.variant)
