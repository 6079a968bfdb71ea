"""Run last (files are collected in name order): the suite left the project's mlruns/ as it was."""
from conftest import MLRUNS_BEFORE, snapshot

from scgen_ablation.paths import MLRUNS_DIR


def test_the_suite_leaves_the_projects_mlruns_as_it_found_it():
    after = snapshot(MLRUNS_DIR)
    changed = sorted(k for k in after.keys() | MLRUNS_BEFORE.keys()
                     if after.get(k) != MLRUNS_BEFORE.get(k))
    assert not changed, f"tests wrote into {MLRUNS_DIR}: {changed[:10]}"
