"""A small mutation check of the promises the benefit side rests on (``nox -s mutants``): each mutant is a plausible
one-line bug in the trained-network, protocol or verdict code, and the named test must fail on it. A mutant that
survives means the promise is no longer tested.

Each mutant runs in a copy of the project's code (bench/, analysis/, tests/, pyproject.toml) in a temporary folder, so
the working tree is never touched; the named test runs there with ``python -m pytest -x -q``. Exit status 1 if any
mutant survives, or if a mutation no longer applies (its line moved: update this list with the code).

    python tests/mutation_check.py            # every mutant
    python tests/mutation_check.py 3 7        # mutants 3 and 7
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("analysis", "bench", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    what: str
    file: str
    before: str
    after: str
    test: str  # pytest node id, relative to the project


MUTANTS = (
    Mutant("the kept weights are the last evaluation's, not the best's", "analysis/networks/loop.py",
           'model.load_state_dict(best["state"])', "pass",
           "tests/test_training_promises.py::test_the_kept_weights_are_the_best_evaluations_not_the_last"),
    Mutant("every seed trains on seed 0's batches", "analysis/networks/recipe.py", "warmup=self.warmup_steps / "
           "self.max_steps, seed=seed,", "warmup=self.warmup_steps / self.max_steps, seed=0,",
           "tests/test_training_promises.py::test_two_seeds_see_different_batches_and_one_seed_the_same"),
    Mutant("the plateau rule compares with the score just before its window", "analysis/networks/recipe.py",
           "max(scores[:-patience]) + min_delta", "scores[-patience - 1] + min_delta",
           "tests/test_training_promises.py::test_the_plateau_rule_compares_with_the_best_before_the_window_not_the_"
           "last_score"),
    Mutant("the classification backbone's key leaves out the data", "analysis/networks/pretrain.py",
           '"data_hash": data.hash, "size": data.size,', '"size": data.size,',
           "tests/test_training_promises.py::test_the_classification_backbone_is_keyed_by_the_data_it_was_pretrained_"
           "on"),
    Mutant("the key holds torch's major release only", "analysis/networks/store.py",
           'split(".")[:2]', 'split(".")[:1]',
           "tests/test_training_promises.py::test_the_key_holds_torchs_major_and_minor_release"),
    Mutant("a path step's effect is read backwards (after against before)", "analysis/networks/spec_accuracy.py",
           "step, total = effect(previous_scores, now_scores)", "step, total = effect(now_scores, previous_scores)",
           "tests/test_path_accuracy.py::test_a_harmless_step_is_decided_by_the_direction_of_its_effect"),
    Mutant("path accuracy reports the val split that picked the weights", "analysis/networks/spec_accuracy.py",
           '"miou": n.reported_miou,', '"miou": n.record["val_miou"],',
           "tests/test_training_promises.py::test_reported_numbers_come_from_the_test_split_where_there_is_one"),
    Mutant("seeds are paired in dictionary order", "analysis/networks/claims.py",
           "pairs = [(s, s) for s in sorted(set(reference) & set(changed))]",
           "pairs = list(zip(sorted(reference), sorted(changed)))",
           "tests/test_accuracy_claims.py::test_pairing_is_by_seed_whatever_seeds_each_arm_has"),
    Mutant("only a failed control gates the claims", "analysis/networks/claims.py",
           "if v.outcome != REPRODUCED}", "if v.outcome == NOT_REPRODUCED}",
           "tests/test_accuracy_claims.py::test_every_control_that_does_not_pass_gates_the_claims"),
    Mutant("branch shares are indexed by their place in the batch", "analysis/networks/branches.py",
           '"image": offset["start"] + i,', '"image": i,',
           "tests/test_accuracy_claims.py::test_branch_share_equals_one_computed_by_hand_image_by_image"),
    Mutant("an interval touching the band's edge from outside is a failure", "analysis/verdicts.py",
           "if x.high < low or x.low > high:", "if x.high <= low or x.low >= high:",
           "tests/test_verdict_rules.py::test_within_at_the_edges_of_its_band"),
    Mutant("the protocol's margin no longer the paper's", "analysis/protocol.toml",
           "accuracy = 1.157", "accuracy = 1.2",
           "tests/test_protocol.py::test_margins_are_the_papers_own_gaps_as_the_file_states"),
    Mutant("the shared images drop out of the interval", "analysis/verdicts.py",
           "shared = max(0.0, float((cov.sum() - cov.diagonal().sum()) / (n * (n - 1))))", "shared = 0.0",
           "tests/test_interval_coverage.py::test_seeds_and_images_covers_the_task_value"),
)


def run(mutant: Mutant) -> tuple[str, float]:
    """'killed', 'SURVIVED' or 'does not apply', and the seconds its test took."""
    with tempfile.TemporaryDirectory(prefix="rfbench-mutant-") as tmp:
        copy = Path(tmp)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".cache"))
            else:
                shutil.copy2(source, copy / name)
        target = copy / mutant.file
        text = target.read_text()
        if text.count(mutant.before) != 1:
            return "does not apply", 0.0
        target.write_text(text.replace(mutant.before, mutant.after))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", mutant.test],
                                cwd=copy, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode == 4 or "no tests ran" in result.stdout or "not found" in result.stdout:
            return "does not apply", seconds  # the named test is gone
        return ("killed" if result.returncode != 0 else "SURVIVED"), seconds


def main(argv: list[str]) -> int:
    chosen = [int(a) for a in argv] if argv else list(range(1, len(MUTANTS) + 1))
    start, bad = time.perf_counter(), 0
    for i in chosen:
        mutant = MUTANTS[i - 1]
        outcome, seconds = run(mutant)
        bad += outcome != "killed"
        print(f"{i:2d}. {outcome:14s} {seconds:5.1f} s  {mutant.what} ({mutant.file})", flush=True)
    print(f"{len(chosen) - bad} of {len(chosen)} mutants killed in {time.perf_counter() - start:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
