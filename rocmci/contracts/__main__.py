"""`python -m rocmci.contracts [--check]`: see rocmci.contracts.export."""

import sys

from rocmci.contracts.export import main

sys.exit(main())
