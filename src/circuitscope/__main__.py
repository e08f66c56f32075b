import sys

from circuitscope.cli import main

sys.exit(main())
