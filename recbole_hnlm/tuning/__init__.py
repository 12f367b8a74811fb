"""Ray Tune searches over any model's and sampler's settings: search spaces in YAML, ASHA, local or on a cluster.

Ray is an optional dependency (``pip install -e ".[tune]"``); it is imported only when a search starts.
"""

from recbole_hnlm.ray_cluster import check_ray_address
from recbole_hnlm.tuning.search import SearchSettings, run_search
from recbole_hnlm.tuning.space import SearchParameter, SearchSpace

__all__ = ["SearchParameter", "SearchSettings", "SearchSpace", "check_ray_address", "run_search"]
