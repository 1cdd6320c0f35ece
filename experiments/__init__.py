"""Quality experiments, one folder per domain: each script trains the domain's recipes through
``titans`` (``titans_lightning.runs``) and prints a table; the folder's ``RESULTS.md`` holds the
measured table. Speed measurements live in ``benchmarks/``."""
