"""Lightning callbacks: evaluation, analysis and outputs that watch a run."""

from callbacks.export import ExportWeights
from callbacks.results import ResultRecord
from callbacks.sharpness import LayerSharpness

__all__ = ["ExportWeights", "LayerSharpness", "ResultRecord"]
