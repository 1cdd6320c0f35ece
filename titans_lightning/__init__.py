"""titans-lightning: a PyTorch Lightning toolkit for Titans (Behrouz, Zhong, Mirrokni 2025).

Read these first: ``cli.py`` (the single entry point), ``tasks/base.py`` (what every domain
subclasses), ``datamodules/base.py`` (the data side), ``recipes/`` (one YAML per experiment).
Importing the package has no side effects: it imports neither Lightning nor the model.
"""

__version__ = "0.1.0"
