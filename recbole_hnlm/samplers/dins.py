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
most of what DINS costs beyond MixGCF on a small graph (results/sampler-speed). For a backbone that pools its layers
by their mean (LightGCN), ``dins_mean_pooled`` also fuses the gathers of the rows and the pooling: one table
gradient, no per-layer gradient of the pooled rows, the positive's and hard negative's rows overwritten in place.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from recbole_hnlm.errors import ConfigurationError
from recbole_hnlm.model.adapters import MeanPooledRows, MeanSynthesis
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


class _DinsMeanPooled(torch.autograd.Function):
    """``dins_mixup`` with the rows gathered from the flat layer table and pooled by their mean (``MeanSynthesis``).

    Forward: the positive's and hardest candidate's layers are gathered (P, H), d = H - P is written over H and the
    negative N = P + w d over P, so that only d and w are kept. Backward, for the gradients of the pooled rows (g_u,
    g_p, g_n) and of the ego rows (e_u, e_p, e_n): the negative's layer gradient is G = g_n / L on every layer plus
    e_n on layer 0, and ``_DinsMixup.backward``'s rule gives the hard negative's gradient and the query's, which joins
    g_u; the positive's layers get G + g_p / L (+ e_p on layer 0) less the hard negative's. Each is added into one
    zero table gradient at its rows.
    """

    @staticmethod
    def forward(ctx, table, queries, user_index, positive_index, hard_index, alpha: float):
        rows, n_layers = positive_index.shape
        positive = table.index_select(0, positive_index.reshape(-1)).unflatten(0, (rows, n_layers))
        difference = table.index_select(0, hard_index.reshape(-1)).unflatten(0, (rows, n_layers)).sub_(positive)
        positive_mean, positive_ego = positive.mean(dim=1), positive[:, 0].clone()
        weights = dins_negative_weights(queries.unsqueeze(1), difference, alpha)
        negative = positive.addcmul_(weights, difference)  # positive's rows are not needed any more
        ctx.save_for_backward(queries, difference, weights, user_index, positive_index, hard_index)
        ctx.table_shape = table.shape
        user_ego = table.index_select(0, user_index[:, 0])
        return queries.clone(), positive_mean, negative.mean(dim=1), user_ego, positive_ego, negative[:, 0].clone()

    @staticmethod
    def backward(ctx, user_grad, positive_grad, negative_grad, user_ego_grad, positive_ego_grad, negative_ego_grad):
        queries, difference, weights, user_index, positive_index, hard_index = ctx.saved_tensors
        rows, n_layers = positive_index.shape
        grads = [user_grad, positive_grad, negative_grad, user_ego_grad, positive_ego_grad, negative_ego_grad]
        user_grad, positive_grad, negative_grad, user_ego_grad, positive_ego_grad, negative_ego_grad = (
            torch.zeros_like(queries) if grad is None else grad for grad in grads
        )
        layer_grad = (negative_grad / n_layers).unsqueeze(1)  # G, less layer 0's ego term, added below
        through_weights = layer_grad * difference
        through_weights[:, 0].addcmul_(negative_ego_grad, difference[:, 0])
        torch.ops.aten.sigmoid_backward.grad_input(through_weights, weights, grad_input=through_weights)
        grad_hard = weights * layer_grad
        grad_hard[:, 0].addcmul_(weights[:, 0], negative_ego_grad)
        grad_hard.addcmul_(through_weights, queries.unsqueeze(1))
        user_grad = user_grad + through_weights.mul_(difference).sum(dim=1)
        grad_positive = torch.sub(((negative_grad + positive_grad) / n_layers).unsqueeze(1), grad_hard)
        grad_positive[:, 0].add_(negative_ego_grad).add_(positive_ego_grad)
        grad_user = (user_grad / n_layers).unsqueeze(1).repeat(1, n_layers, 1)
        grad_user[:, 0].add_(user_ego_grad)
        table_grad = queries.new_zeros(ctx.table_shape)
        for index, grad in ((user_index, grad_user), (positive_index, grad_positive), (hard_index, grad_hard)):
            table_grad.index_add_(0, index.reshape(-1), grad.flatten(0, 1))
        return table_grad, None, None, None, None, None


def dins_mean_pooled(
    table: torch.Tensor,
    queries: torch.Tensor,
    user_index: torch.Tensor,
    positive_index: torch.Tensor,
    hard_index: torch.Tensor,
    alpha: float,
) -> MeanPooledRows:
    """DINS for a mean-pooling backbone as a ``MeanSynthesis``: ``queries`` (rows, dim) must be the mean of the users'
    layers (``table`` rows ``user_index``), which take their gradient. The same values and gradients as gathering the
    rows, ``dins_mixup`` with the pooled query and mean pooling (tests/samplers/test_mixing_samplers.py)."""
    return MeanPooledRows(*_DinsMeanPooled.apply(table, queries, user_index, positive_index, hard_index, alpha))


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

    def mean_synthesis(self) -> MeanSynthesis:
        """``dins_mean_pooled`` with this run's ``dins_alpha``."""
        return partial(dins_mean_pooled, alpha=self.alpha)
