"""numpy's OpenBLAS runs on one thread in a DermaScan process unless the user says otherwise.

Its pool threads, woken by the heat map's product in the service's inference thread, took the cores from the
next model call (``dermascan/__init__.py`` has the figures); the setting only holds if it is made before numpy
loads, so it is checked in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = (
    "import dermascan, numpy, json; from threadpoolctl import threadpool_info; "
    "print(json.dumps([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']))"
)


def _blas_threads(env_value: str | None) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_dermascan_first_gives_numpy_one_blas_thread() -> None:
    threads = _blas_threads(None)
    assert threads, "numpy reports no BLAS library"
    assert threads == [1] * len(threads)


def test_the_users_own_setting_wins() -> None:
    threads = _blas_threads("2")
    assert threads == [2] * len(threads)
