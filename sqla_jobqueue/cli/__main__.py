"""``python -m sqla_jobqueue.cli``: the same as the ``sqla-jobqueue`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
