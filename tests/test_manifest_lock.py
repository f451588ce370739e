"""Two report runs at once keep both their sections: the manifest update is serialised by a file lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import analysis.report as report
from analysis.report.files import Section


def _run_one(out: str, name: str, delay: float) -> None:
    def fake(out_dir):
        time.sleep(delay)
        return Section(f"fake {name}", text=f"from {name}")

    report.SECTIONS[name] = fake
    report.run([name], out=__import__("pathlib").Path(out), device="cpu")


def test_concurrent_section_runs_both_land_in_the_manifest(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_run_one, args=(str(tmp_path), name, delay))
             for name, delay in (("complexity", 0.5), ("zoo", 0.6))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(), parse_constant=_refuse)
    assert {"complexity", "zoo"} <= set(manifest)
    assert manifest["complexity"]["text"] == "from complexity" and manifest["zoo"]["text"] == "from zoo"
    front = (tmp_path / "README.md").read_text()
    assert "fake complexity" in front and "fake zoo" in front


def test_without_the_merge_one_run_would_be_lost(tmp_path, monkeypatch):
    """The failure the lock prevents, shown: a manifest written from a stale copy drops the other section."""
    (tmp_path / "manifest.json").write_text(json.dumps({"zoo": {"section": "zoo", "title": "old zoo"}}))
    monkeypatch.setitem(report.SECTIONS, "complexity", lambda out: Section("fake complexity"))
    report.run(["complexity"], out=tmp_path, device="cpu")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest) == {"zoo", "complexity"}  # the entry written by another run is kept


def _refuse(token):
    raise ValueError(f"non-standard JSON constant {token}")
