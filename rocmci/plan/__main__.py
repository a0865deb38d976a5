"""`python -m rocmci.plan [FILE ...]`."""

import sys

from rocmci.plan import main

sys.exit(main())
