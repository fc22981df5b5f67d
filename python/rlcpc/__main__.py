"""``python -m rlcpc ARGS``: the ``rlcpc`` command line (the same as the binary's)."""

import sys

from . import _native


def main():
    sys.stdout.flush()
    sys.exit(_native.main(["rlcpc"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
