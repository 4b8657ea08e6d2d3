"""`python -m sharcs`: the same as the `sharcs` command."""

import sys

from sharcs.cli.main import main

sys.exit(main())
