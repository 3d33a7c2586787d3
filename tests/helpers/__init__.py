"""What the tests share besides fixtures (those are in ``tests/conftest.py``): components built with conf/'s values
(:mod:`helpers.components`), processes to start and kill (:mod:`helpers.processes`), and the small clone every
end-to-end test runs (:mod:`helpers.clone`). Tests import these modules; nothing imports ``conftest``."""

import os
from pathlib import Path

# Ray's local clusters use token authentication by default and say so on stderr at every start, unless
# RAY_AUTH_MODE is set; the first in-process ray.init sets it for this process and its children. Set it (to the
# same default) before anything imports ray, which reads it at import, so the clone subprocesses' stderr is the
# same whatever the test order.
os.environ.setdefault("RAY_AUTH_MODE", "token")

#: the repository
ROOT = Path(__file__).resolve().parents[2]
