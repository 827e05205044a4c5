"""``python -m bench``: see bench/runner.py, or ``python -m bench --help``;
``python -m bench --fuzz``: the parsers' long property-test run (bench/fuzz.py)."""

import sys

if sys.argv[1:2] == ["--fuzz"]:
    from bench.fuzz import main as fuzz

    raise SystemExit(fuzz(sys.argv[2:]))

from bench.runner import main  # noqa: E402

raise SystemExit(main())
