"""DINS: dimension independent mixup of the positive and the hardest candidate.

Reference: Xi Wu et al. "Dimension Independent Mixup for Hard Negative Sample in Collaborative Filtering."
in CIKM 2023. Reference code: https://github.com/Wu-Xi/DINS

For a (user u, positive p) row with M uniform candidates and layers l = 0..L, q(l) the user query of layer l
(the pooled user embedding for mean/sum pooling, the user's layer-l embedding for concat pooling):

- hard boundary definition: per layer, the hardest candidate h(l) = argmax_m <q(l), n_m(l)>;
- dimension independent mixup: per layer and dimension d, the weight of the hard negative

      w_d(l) = exp(q_d h_d) / (alpha * exp(q_d p_d) + exp(q_d h_d)) = sigmoid(q_d (h_d - p_d) - ln alpha),

  a two-way softmax of the dimension's score contributions, where ``dins_alpha`` > 0 tilts every dimension
  towards the positive; the negative is n_d(l) = (1 - w_d(l)) p_d(l) + w_d(l) h_d(l);
- multi-hop pooling: the mixed layers are pooled like the backbone pools its layers.

The weights are not detached (as in the reference code), so the loss also trains through them. The mixup is one
autograd function (``dins_mixup``) with its derivatives written out: the same values and gradients as the composed
operations (tests/samplers/test_mixing_samplers.py), in fewer passes over the (rows, layers, dim) arrays, which is
most of what DINS costs beyond MixGCF on a small graph (results/sampler-speed).
"""

from __future__ import annotations

import math

import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.samplers.mixing import MixingSampler


def dins_negative_weights(queries: torch.Tensor, difference: torch.Tensor, alpha: float) -> torch.Tensor:
    """The per-dimension weight of the hard negative, exp(qh) / (alpha exp(qp) + exp(qh)), overflow-free.

    ``difference`` is ``hard - positive``, which the mixup reuses: n = p + w (h - p).
    """
    shift = queries.new_full((), -math.log(alpha))
    return torch.addcmul(shift, queries, difference).sigmoid_()  # one new array, then in place


class _DinsMixup(torch.autograd.Function):
    """n = p + w (h - p), w = sigmoid(q (h - p) - ln alpha) (``dins_negative_weights``), with its gradients written out.

    With d = h - p and s = w (1 - w): dn/dh = w + s q d, dn/dp = 1 - dn/dh and dn/dq = s d^2 (summed over the
    dimensions ``q`` was broadcast along, e.g. the layers of a pooled query).
    """

    @staticmethod
    def forward(ctx, queries, positive, hard, alpha: float):
        difference = hard - positive
        weights = dins_negative_weights(queries, difference, alpha)
        ctx.save_for_backward(queries, difference, weights)
        return torch.addcmul(positive, weights, difference)

    @staticmethod
    def backward(ctx, grad):
        queries, difference, weights = ctx.saved_tensors
        # g d s in two passes, the second in place: sigmoid's own backward kernel multiplies by w (1 - w) in one.
        through_weights = grad * difference
        torch.ops.aten.sigmoid_backward.grad_input(through_weights, weights, grad_input=through_weights)
        grad_hard = (grad * weights).addcmul_(through_weights, queries)
        grad_queries = None
        if ctx.needs_input_grad[0]:
            grad_queries = through_weights.mul_(difference).sum_to_size(queries.shape)
        return grad_queries, grad - grad_hard, grad_hard, None


def dins_mixup(queries: torch.Tensor, positive: torch.Tensor, hard: torch.Tensor, alpha: float) -> torch.Tensor:
    """The DINS negative ``positive + dins_negative_weights(queries, hard - positive, alpha) * (hard - positive)``.

    ``queries`` broadcasts against the per-layer ``positive`` and ``hard`` (rows, layers, dim), e.g. (rows, 1, dim).
    """
    return _DinsMixup.apply(queries, positive, hard, alpha)


class DimensionIndependentMixupSampler(MixingSampler):
    """Mixes the positive and the hardest candidate of each layer with a separate weight per dimension."""

    name = "dins"

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.alpha = float(config["dins_alpha"])

    @classmethod
    def validate_config(cls, config) -> None:
        """``dins_alpha`` must be a positive number."""
        super().validate_config(config)
        alpha = config["dins_alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ConfigurationError(
                f"dins_alpha={alpha!r} is invalid: it must be a number > 0 (the weight of the positive in each "
                "dimension's mixup). Fix: e.g. --dins_alpha=0.5."
            )

    def synthesize(self, queries: torch.Tensor, pos_e: torch.Tensor, hard_e: torch.Tensor) -> torch.Tensor:
        """The hardest candidate of each layer, mixed with the positive dimension by dimension."""
        return dins_mixup(queries, pos_e, hard_e, self.alpha)
