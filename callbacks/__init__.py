"""Lightning callbacks: evaluation, analysis and outputs that watch a run."""

from callbacks.adversarial import AdversarialEval
from callbacks.corruption import CorruptionEval
from callbacks.export import ExportWeights
from callbacks.finite_loss import FiniteLossGuard
from callbacks.nullspace import NullspaceAnalysis
from callbacks.protocol import ProtocolRecord
from callbacks.results import ResultRecord
from callbacks.robust_validation import RobustValidation
from callbacks.sharpness import LayerSharpness
from callbacks.shift import ShiftEval
from callbacks.throughput import Throughput

__all__ = [
    "AdversarialEval",
    "CorruptionEval",
    "ExportWeights",
    "FiniteLossGuard",
    "LayerSharpness",
    "NullspaceAnalysis",
    "ProtocolRecord",
    "ResultRecord",
    "RobustValidation",
    "ShiftEval",
    "Throughput",
]
