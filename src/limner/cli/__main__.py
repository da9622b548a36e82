"""`python -m limner.cli ...` (what torchrun launches) is `limner ...`."""

import sys

from limner.cli import main

sys.exit(main())
