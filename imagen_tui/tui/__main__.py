"""`python -m imagen_tui.tui`: the same as the `imagen-tui` command."""

import sys

from imagen_tui.tui.launch import main

sys.exit(main())
