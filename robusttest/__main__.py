"""``python -m robusttest``: the ``robusttest`` command."""

from __future__ import annotations

import sys

from robusttest.cli import main

if __name__ == "__main__":
    sys.exit(main())
