"""mmrag_assets/definitions.py: the code location reads its environment when Dagster loads it, not at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _python(code: str, overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMRAG_OVERRIDES": overrides}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)


def test_importing_the_definitions_reads_no_environment_and_loading_them_does() -> None:
    bad = json.dumps(["search.kk=3"])  # a key the schema does not know: composing it fails
    imported = _python("import mmrag_assets.definitions", bad)
    assert imported.returncode == 0, imported.stderr[-2000:]
    loading = _python("from mmrag_assets.definitions import defs; defs()", bad)
    assert loading.returncode != 0 and "search.kk is not a config key" in loading.stderr
    good = _python(
        "from dagster._core.definitions.reconstruct import ReconstructableRepository\n"
        "r = ReconstructableRepository.for_module('mmrag_assets.definitions', 'defs', working_directory='.')\n"
        "print(r.get_definition().get_sensor_def('corpus_sensor').minimum_interval_seconds)",
        json.dumps(["orchestration.sensor_interval_s=7"]),
    )  # how Dagster's code server and the run processes load it
    assert good.returncode == 0, good.stderr[-2000:]
    assert good.stdout.strip().splitlines()[-1] == "7"
