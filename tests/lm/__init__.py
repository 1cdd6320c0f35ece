"""Tests of the language-modelling domain (datamodules/text/, heads/lm.py, tasks/lm.py, recipes/lm/)."""
