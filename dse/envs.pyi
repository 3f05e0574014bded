# For type checkers only: the folder envs/ installs as dse.envs (setuptools package-dir), a mapping mypy cannot
# follow from the source tree; this stub hands it the same names, checked as the package `envs`.
from envs import *  # noqa: F403  (the names of `envs.__all__`)
