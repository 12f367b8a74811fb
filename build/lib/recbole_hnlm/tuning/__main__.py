"""python -m recbole_hnlm.tuning: a Ray Tune search (see recbole_hnlm.tuning.cli)."""

import sys

from recbole_hnlm.tuning.cli import main

sys.exit(main())
