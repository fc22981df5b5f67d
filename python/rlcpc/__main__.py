"""``python -m rlcpc ARGS``: the ``rlcpc`` command line (the same as the binary's)."""

import signal
import sys

from . import _native


def main() -> None:
    # The binary's behaviour: Ctrl-C ends a command at once (train and pretrain install
    # their own handler, which checkpoints); Python's handler would only set a flag.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    sys.exit(_native.main(["rlcpc"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
