"""`python -m e2train ...` is the `e2train` command (the simulated board and the agent's restart
start it this way, so they need no console script on the PATH)."""
import sys

from .app.cli import main

sys.exit(main())
