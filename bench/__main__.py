"""`python -m bench`: run the benchmark (see `bench/README.md` and `--help`)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
