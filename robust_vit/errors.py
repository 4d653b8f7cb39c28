"""The one error type for bad user input: it names the config field and says how to fix it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value, raised before any compute is spent.

    Args:
        field: the dotted config key the user set (``model.model_name``, ``data.data_dir``).
        message: what is wrong and how to fix it.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class TrainingFault(RuntimeError):
    """A run stopped on purpose because training went wrong (e.g. a non-finite loss).

    The CLI prints it as ``robust-vit: training stopped: <message>`` and exits with code 1.
    """
