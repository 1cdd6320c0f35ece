"""Tests of the language-modelling domain (datamodules/text*.py, heads/lm.py, tasks/lm.py, recipes/lm/)."""
