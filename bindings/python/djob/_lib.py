"""Find and load libdjob: the one place that decides where it comes from.

Tried in order: the file (or directory) named by DJOB_LIBRARY_PATH, the
copy inside this package (the libdjob.so a wheel built by
`pip install ./bindings/python` holds, or a libdjob.so.0 copied there),
then the system (ctypes.util.find_library and the plain soname, which the
dynamic loader resolves through its usual paths). A variable set on purpose
wins over what an installed package holds, as LD_LIBRARY_PATH does; a
variable naming nothing loadable falls through to the package. When none
loads, one ImportError lists every place tried and why it failed.
"""

import ctypes
import ctypes.util
import os

SONAME = "libdjob.so.0"
_PACKAGE_NAMES = (SONAME, "libdjob.so")


def _candidates():
    env = os.environ.get("DJOB_LIBRARY_PATH")
    if env:
        if os.path.isdir(env):
            for name in _PACKAGE_NAMES:
                yield "DJOB_LIBRARY_PATH", os.path.join(env, name)
        else:
            yield "DJOB_LIBRARY_PATH", env
    here = os.path.dirname(os.path.abspath(__file__))
    for name in _PACKAGE_NAMES:
        yield "package", os.path.join(here, name)
    found = ctypes.util.find_library("djob")
    yield "system (find_library('djob'))", found
    yield "system (loader)", SONAME


def load():
    """Return (ctypes.CDLL, path) for the first library that loads."""
    tried = []
    for origin, path in _candidates():
        if path is None:
            tried.append(f"  {origin}: not found")
            continue
        if os.sep in path and not os.path.exists(path):
            tried.append(f"  {origin}: {path}: no such file")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"  {origin}: {path}: {e}")
    if not os.environ.get("DJOB_LIBRARY_PATH"):
        tried.insert(0, "  DJOB_LIBRARY_PATH: not set")
    raise ImportError(
        "djob: cannot load the libdjob shared library; tried:\n"
        + "\n".join(tried)
        + "\nInstall the package with pip install ./bindings/python (its wheel "
        "holds libdjob), or set DJOB_LIBRARY_PATH to a built library (for "
        "example build/libdjob/libdjob.so.0), or install libdjob."
    )
