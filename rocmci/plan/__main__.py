"""`python -m rocmci.plan [FILE ...]`."""

import sys

from rocmci.plan.load import main

sys.exit(main())
