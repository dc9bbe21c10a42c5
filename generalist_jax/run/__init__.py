"""Run directories: the training loop, checkpoints, restoring, metric logs,
preemption, evaluating and exporting a run's checkpoint, and suites of runs.

  loop.py          train_and_evaluate(config, workdir): train or resume one run
  workdir_lock.py  one writer per workdir (<workdir>/.lock)
  run_config.py    a workdir belongs to one config (a changed one is refused)
  fork.py          config.init_from: start from another run's checkpoint
  files.py         small files written whole (config.json, metrics.jsonl)
  validation.py    validation during training, best checkpoint, final test
  checkpoints.py   orbax: last N and best-on-validation
  restore.py       restore_run(workdir, checkpoint): the one way to read a run back
  metric_writer.py metrics.jsonl and TensorBoard events
  preemption.py    SIGTERM -> save and exit
  evaluate_run.py  AutoAttack-style evaluation of a run's learner (the evaluate CLI)
  export.py        a run's learner as a PyTorch state_dict
  interpolate.py   accuracy along the line between two learners of a run
  suite.py         several runs trained, evaluated alike and compared
  cli.py           flags_only: what the flags-only entry points do first
  process_flags.py the flags that make a command one process of a multi-host job
"""
