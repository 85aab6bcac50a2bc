import sys

from spikevision.cli import main

sys.exit(main())
