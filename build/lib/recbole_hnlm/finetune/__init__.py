"""HNLMRec's encoder fine-tuning chain: CF-mined supervision, LoRA fine-tuning, encoding, CF training on the vectors.

Reference: Zhao et al., "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering? Findings and
Potentials" (HNLMRec), arXiv 2504.04726: LLM negatives alone trail traditional samplers (noise, no behavioural
constraint); fine-tuning the LLM under collaborative supervision is what makes them pay.

Stages (``python -m recbole_hnlm.finetune``): ``mine`` (``mining.py``), ``train`` (``train.py``), ``encode``
(``encode.py``) and ``chain`` (``chain.py``, all of them, then the CF run). The CF side reads the encoded vectors
through ``hnlm_encoder: untuned|finetuned`` (``properties/finetune.yaml``). Models load from installed packages
and local folders only: ``HF_HUB_OFFLINE=1`` is set here unless the environment already says otherwise.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
