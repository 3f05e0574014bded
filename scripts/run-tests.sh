#!/usr/bin/env bash
# The test suite, as the README and .ci/run run it: starts the local single-node Slurm cluster
# (scripts/slurm-local.sh) for the integration tests, runs pytest, stops the cluster it started.
#   - as root (CI, a developer's container): the cluster is installed/started; Slurm tests must pass.
#   - without root: the Slurm tests are skipped explicitly (-m "not slurm") and the rest runs.
# pytest exit 5 (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
started=0
markers=()
if [[ $EUID -eq 0 && "${DSE_SKIP_SLURM:-0}" != "1" ]]; then
    if scripts/slurm-local.sh status >/dev/null 2>&1; then
        echo "run-tests: local Slurm already running" >&2
    else
        scripts/slurm-local.sh start || { echo "run-tests: could not start the local Slurm cluster" >&2; exit 1; }
        started=1
    fi
    export DSE_REQUIRE_SLURM=1
else
    echo "run-tests: not root (or DSE_SKIP_SLURM=1): skipping the Slurm integration tests" >&2
    markers=(-m "not slurm")
fi
"$PY" -m pytest -q "${markers[@]}" "$@"
rc=$?
if [[ $started -eq 1 ]]; then
    scripts/slurm-local.sh stop || true
fi
if [[ $rc -eq 5 ]]; then
    echo "run-tests: pytest collected no tests" >&2
    exit 1
fi
exit $rc
