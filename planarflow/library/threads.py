"""BLAS threads while a fit runs.

A fit's matrix products are small — the engine's, and a user's energy at a batch of a few hundred
points — and a pool of BLAS threads per process only makes them wait for each other and for
whatever else runs on the cores. Measured on a 2-core machine with the other core busy (python -m
planarflow benchmark --stopping): a fit of the 10-predictor regression took 7.3 s with NumPy's
default OpenBLAS threads and 3.4 s with one. So ``fit`` runs with one BLAS thread and puts the
number back when it returns.

NumPy has no switch for this; its own OpenBLAS library has one (``openblas_set_num_threads``,
under the names NumPy's wheels give it), which ``blas_threads`` finds among the libraries this
process has loaded (Linux). Where it cannot — another BLAS, another system — nothing is changed and
a warning says once how to do it by hand: set OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1,
MKL_NUM_THREADS=1, VECLIB_MAXIMUM_THREADS=1) in the environment before Python starts.
"""

import contextlib
import ctypes
import os
import warnings

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
SYMBOLS = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
           ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
           ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
           ("openblas_get_num_threads", "openblas_set_num_threads")]
_found = []                   # [(get, set) or None], once looked up
_warned = []


def openblas():
    """(get, set) of the number of threads of the OpenBLAS this process loaded, or None."""
    if not _found:
        _found.append(_look_up())
    return _found[0]


def _look_up():
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in SYMBOLS:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                return get, set_
    return None


@contextlib.contextmanager
def blas_threads(n):
    """Within the block, NumPy's OpenBLAS uses at most ``n`` threads (None: as it is); restored
    after. Where the library cannot be reached, a warning (once) says how to set it by hand."""
    found = openblas() if n is not None else None
    if n is not None and found is None and not any(os.environ.get(k) for k in ENV_VARS) and not _warned:
        _warned.append(True)
        warnings.warn("planarflow could not limit NumPy's BLAS threads in this process (its BLAS is not an "
                      "OpenBLAS it can reach): a fit runs fastest with one, so start Python with "
                      "OPENBLAS_NUM_THREADS=1 (or OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, VECLIB_MAXIMUM_THREADS=1) "
                      "in the environment", RuntimeWarning, stacklevel=4)
    if found is None:
        yield
        return
    get, set_ = found
    before = get()
    set_(min(n, before) if before > 0 else n)
    try:
        yield
    finally:
        set_(before)
