"""robust-vit's application layer: the CLI, preflight checks, sweeps, reports and the results page.

It turns configs into runs and records into pages; it may import every layer below it
(``callbacks``, ``lightning_modules``, ``datamodules``, ``robust_vit``), and nothing imports it.
"""
