"""Run a program as `__main__` and report, on stderr, how long its main part and the exit took.

`python bench/programs/phases.py PROGRAM [ARGS...]`: the exit phase runs from the end of the
program's own code to the last `atexit` handler (this one, registered first so it runs last), so
it includes joining non-daemon threads and Ray's shutdown hook.
"""

import atexit
import os
import runpy
import sys
import time

T0 = time.perf_counter()
_end: list[float] = []


def _report() -> None:
    if _end:
        now = time.perf_counter()
        sys.stderr.write(f"BENCH-PHASES main={_end[0] - T0:.3f} exit={now - _end[0]:.3f}\n")
        sys.stderr.flush()


atexit.register(_report)

if __name__ == "__main__":
    target = os.path.abspath(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(target)  # as if `python PROGRAM` had been run
    try:
        runpy.run_path(target, run_name="__main__")
    finally:
        _end.append(time.perf_counter())
