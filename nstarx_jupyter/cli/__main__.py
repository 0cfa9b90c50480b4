"""`python -m nstarx_jupyter.cli`: the `nstarx` command."""

import sys

from nstarx_jupyter.cli import main

sys.exit(main())
