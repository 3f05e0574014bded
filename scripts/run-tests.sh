#!/usr/bin/env bash
# The test suite, as the README and .ci/run run it: starts the local single-node Slurm cluster
# (scripts/slurm-local.sh) for the integration tests, runs pytest, stops the cluster it started.
#   - as root (CI, a developer's container): the cluster is installed/started; Slurm tests must pass.
#   - without root: the Slurm tests are skipped explicitly (-m "not slurm") and the rest runs.
# ruff and mypy run first; pytest exit 5 (no tests collected) is a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# The static checks first (seconds, and a failure here needs no cluster): lint and types, configured in
# pyproject.toml ([tool.ruff], [tool.mypy]).
"$PY" -m ruff check . || { echo "run-tests: ruff found problems" >&2; exit 1; }
"$PY" -m mypy || { echo "run-tests: mypy found type errors" >&2; exit 1; }
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
# The Megatron-Core oracle tests (-m oracle, tests/test_megatron_oracle.py) need megatron-core 0.16.0,
# installed without its torch dependency (a multi-GB CUDA build; the oracle stubs torch in a subprocess).
# Checked with find_spec and the installed version: importing megatron.core here would need torch.
oracle_check='import importlib.metadata as m, importlib.util as u, sys
ok = u.find_spec("megatron") is not None and u.find_spec("megatron.core") is not None
sys.exit(0 if ok and m.version("megatron-core") == "0.16.0" else 1)'
export DSE_REQUIRE_ORACLE=${DSE_REQUIRE_ORACLE:-1}
if ! "$PY" -c "$oracle_check" 2>/dev/null; then
    if ! "$PY" -m pip install -q --no-deps megatron-core==0.16.0 'packaging>=24.2'; then
        echo "run-tests: could not install megatron-core==0.16.0 (pip --no-deps) for the oracle tests" >&2
        if [[ "$DSE_REQUIRE_ORACLE" != "0" ]]; then
            [[ $started -eq 1 ]] && { scripts/slurm-local.sh stop || true; }
            exit 1
        fi
    fi
fi
# The whole suite with the cluster: the Slurm tests (-m slurm, mostly waiting on jobs) run in a second pytest
# beside the rest, one process each on a 2-core machine (10.4 -> about 7 min). pytest-xdist cannot keep them on
# one worker with pytest 9 (its loadgroup mode relies on a node id attribute pytest 9 no longer reads).
# Given arguments (a file, -k ...), one pytest runs them as they are.
no_tests() { [[ $1 -eq 5 ]] && echo "run-tests: pytest collected no $2 tests" >&2; }
if [[ ${#markers[@]} -eq 0 && $# -eq 0 ]]; then
    slurm_log=$(mktemp)
    # bash starts a background command with SIGINT ignored, and its children would inherit that (a test sends
    # SIGINT to a launcher): the default is restored before pytest starts
    "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])' \
        -q -m slurm -p no:cacheprovider >"$slurm_log" 2>&1 &
    slurm_pid=$!
    "$PY" -m pytest -q -m "not slurm"
    rc=$?
    wait "$slurm_pid"
    slurm_rc=$?
    echo "run-tests: the Slurm tests (-m slurm, run beside the others):"
    cat "$slurm_log"
    rm -f "$slurm_log"
    no_tests $rc "non-Slurm" && rc=1
    no_tests $slurm_rc "Slurm" && slurm_rc=1
    [[ $rc -eq 0 ]] && rc=$slurm_rc
else
    "$PY" -m pytest -q "${markers[@]}" "$@"
    rc=$?
    no_tests $rc "" && rc=1
fi
if [[ $started -eq 1 ]]; then
    scripts/slurm-local.sh stop || true
fi
exit $rc
