"""Lightning callbacks: evaluation, analysis and outputs that watch a run."""

from callbacks.export import ExportWeights
from callbacks.nullspace import NullspaceAnalysis
from callbacks.results import ResultRecord

__all__ = ["ExportWeights", "NullspaceAnalysis", "ResultRecord"]
