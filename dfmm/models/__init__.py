"""The card's three models: visual branch, text branch, fusion ensemble (``nn.Module``s, no I/O)."""

from dfmm.models.fusion import FusionEnsemble
from dfmm.models.text import TextBranch
from dfmm.models.visual import VisualBranch

__all__ = ["FusionEnsemble", "TextBranch", "VisualBranch"]
