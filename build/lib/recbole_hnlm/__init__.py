"""recbole-hnlm: semantic hard negative sampling (HNLMRec) and classic samplers for RecBole's pairwise models.

Importing the package applies the RecBole workarounds (``compat``), registers the methods that ship as their own
folders (``recbole_hnlm.hnlm``) and loads third-party plugins: installed packages that declare an entry point in
the group ``recbole_hnlm.plugins`` (their module calls ``register_sampler`` / ``register_model`` when imported).
"""

from importlib.metadata import entry_points

from recbole_hnlm import compat, hnlm  # noqa: F401 - hnlm registers HNLMRec and its sampler

compat.apply()

for _plugin in entry_points(group="recbole_hnlm.plugins"):
    _plugin.load()

__version__ = "0.1.0"
