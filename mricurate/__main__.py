"""``python -m mricurate``.

Guarded: processes started by spawn (the runner's workers, the runs
``serve`` starts) import the main module again, and must not run the CLI.
"""

from mricurate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
