"""Train any pairwise RecBole model with any registered negative sampler (``--help`` lists the options).

Example: python run_recbole_hnlm.py --model=LightGCN --dataset=ml-100k --neg_sampler=dns --epochs=5
"""

import sys

from recbole_hnlm.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
