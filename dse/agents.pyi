# For type checkers only: the folder agents/ installs as dse.agents (setuptools package-dir), a mapping mypy
# cannot follow from the source tree; this stub hands it the same names, checked as the package `agents`.
from agents import *  # noqa: F403  (the names of `agents.__all__`)
