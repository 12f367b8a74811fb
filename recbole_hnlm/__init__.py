"""recbole-hnlm: semantic hard negative sampling (HNLMRec) and classic samplers for RecBole's pairwise models.

Importing the package applies the RecBole workarounds (``compat``, first: it refuses library versions RecBole
breaks on), registers the methods that ship as their own folders (``recbole_hnlm.hnlm``: HNLMRec and its sampler;
``recbole_hnlm.llm_cf``: RLMRec and AlphaRec) and loads third-party plugins: installed packages that declare an
entry point in the group ``recbole_hnlm.plugins`` (their module calls ``register_sampler`` / ``register_model``).
"""

from importlib.metadata import entry_points

from recbole_hnlm import compat

compat.apply()

from recbole_hnlm import hnlm, llm_cf  # noqa: E402, F401 - importing them registers their samplers and models

for _plugin in entry_points(group="recbole_hnlm.plugins"):
    _plugin.load()

__version__ = "0.1.0"
