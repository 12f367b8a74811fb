"""What every model that wraps a backbone shares: the backbone scores, and its non-parameter state is the model's."""

from __future__ import annotations

import torch


class BackboneWrapper:
    """Mixin for a RecBole model holding ``self.backbone``: scoring and saved extra state are the backbone's.

    ``wraps_backbone`` tells the Config to read ``backbone`` and give the run the backbone's defaults.
    """

    wraps_backbone = True
    backbone: torch.nn.Module

    def predict(self, interaction) -> torch.Tensor:
        """The backbone's scores."""
        return self.backbone.predict(interaction)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        """The backbone's full-ranking scores."""
        return self.backbone.full_sort_predict(interaction)

    def other_parameter(self) -> dict:
        """The backbone's non-parameter state (e.g. LightGCN's cached evaluation embeddings)."""
        return self.backbone.other_parameter()

    def load_other_parameter(self, para: dict | None) -> None:
        """Restore the backbone's non-parameter state."""
        self.backbone.load_other_parameter(para)
