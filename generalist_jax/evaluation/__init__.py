"""Evaluation: attacks run on data, per-example flags, reports and plots.
Nothing here knows about run directories except reading their files.

  runner.py    resumable AutoAttack-style runs of a plan of (norm, attack) columns
  checks.py    the front door: inputs, model output and plan checked before any attack
  reports.py   an evaluation's .json / .csv / .md and its resumable state
  learners.py  clean and adversarial accuracy of learners (validation, final test)
  tables.py    the one Markdown table writer
  plots.py     PNG plots of a run and of an evaluation
  compare.py   a Markdown report comparing runs
"""
