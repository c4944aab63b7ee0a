"""The ``shoal`` command inside the interpreter: workers it starts run Python tasks."""

import sys

from . import _native


def main() -> int:
    argv = ["shoal", *sys.argv[1:]]
    return _native.cli_main(argv, [sys.executable, "-m", "shoal"])


if __name__ == "__main__":
    sys.exit(main())
