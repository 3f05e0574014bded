"""`python -m dse.simulator --config CONFIG.json --out DIR`: one SIMULATED run (see `dse.simulator._program`)."""

import sys

from dse.simulator._program import main

if __name__ == "__main__":
    sys.exit(main())
