"""Evaluation: attacks run on data, per-example flags, reports and plots.
Nothing here knows about run directories except reading their files.

  pipeline.py  the one evaluation path (API, external checkpoints, runs): eps check,
               plan, resumable run, report; the CLI's files (x_adv, RobustBench entry)
  runner.py    resumable AutoAttack-style runs of a plan of (norm, attack) columns
  jitted.py    its jitted per-batch functions (predictor, clean pass, attack stages)
  summary.py   the report's numbers and sanity checks, from the per-example flags
  checks.py    the front door: inputs, model output and plan checked before any attack
  reports.py   an evaluation's .json / .csv / .md and its resumable state
  learners.py  clean and adversarial accuracy of learners (validation, final test)
  tables.py    the one Markdown table writer
  plots.py     PNG plots of a run and of an evaluation
  compare.py   a Markdown report comparing runs
  leaderboard.py   a RobustBench model_info entry of a 'standard' evaluation
  compile_cache.py XLA's persistent compile cache for evaluations (on by default)
  api.py       AutoAttack for any JAX model, called as the official one is
  parity.py    our AutoAttack against the official one on the same model and points
"""
