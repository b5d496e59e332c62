"""`python -m edgeagent` is the same as the `edgeagent` console script."""

from edgeagent.cli import main

raise SystemExit(main())
