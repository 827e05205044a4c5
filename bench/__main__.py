"""``python -m bench``: see bench/runner.py, or ``python -m bench --help``."""

from bench.runner import main

raise SystemExit(main())
