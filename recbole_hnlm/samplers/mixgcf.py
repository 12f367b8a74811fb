"""MixGCF: hard negatives synthesized by positive mixing and hop mixing.

Reference: Tinglin Huang et al. "MixGCF: An Improved Training Method for Graph Neural Network-based
Recommender Systems." in KDD 2021. Reference code: https://github.com/huangtinglin/MixGCF

For a (user u, positive p) row with M uniform candidates n_1..n_M and layers l = 0..L:

- positive mixing: n'_m(l) = a(l) * p(l) + (1 - a(l)) * n_m(l), with a(l) ~ U(0, 1) drawn per row and layer and
  shared by the row's candidates, as in the reference code (the paper: "uniformly sampled for each hop");
- hop mixing: per layer, the mixed candidate with the highest <f_Q(u, l), n'_m(l)>, where f_Q(u, l) is the
  pooled user embedding for mean/sum pooling and the user's layer-l embedding for concat pooling. As a(l)
  <f_Q, p(l)> is the same for all of a row's candidates and 1 - a(l) > 0, that is the mixture of the candidate
  with the highest <f_Q(u, l), n_m(l)>, so candidates are scored before mixing and only the picked one is mixed;
- the synthesized negative is pooled like the backbone pools its layers (LightGCN/SGL mean, NGCF concat; BPR
  has a single layer, where MixGCF reduces to mixing the positive into the hardest of M candidates).
"""

from __future__ import annotations

import torch

from recbole_hnlm.samplers.mixing import MixingSampler


class MixGCFSampler(MixingSampler):
    """Per layer, mixes the positive into every candidate and keeps the hardest mixture."""

    name = "mixgcf"

    def synthesize(self, queries: torch.Tensor, pos_e: torch.Tensor, hard_e: torch.Tensor) -> torch.Tensor:
        """Positive mixing of the hardest candidate of each layer, with a(l) ~ U(0, 1) per row and layer."""
        alpha = torch.rand(*hard_e.shape[:2], 1, device=hard_e.device, dtype=hard_e.dtype)
        return torch.lerp(hard_e, pos_e, alpha)  # alpha * pos + (1 - alpha) * hard, one fused operation
