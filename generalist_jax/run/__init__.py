"""Run directories: the training loop, checkpoints, restoring, metric logs,
preemption, evaluating and exporting a run's checkpoint, and suites of runs.

  loop.py          train_and_evaluate(config, workdir): train or resume one run
  workdir_lock.py  one writer per workdir (<workdir>/.lock)
  validation.py    validation during training, best checkpoint, final test
  checkpoints.py   orbax: last N and best-on-validation
  restore.py       restore_run(workdir, checkpoint): the one way to read a run back
  metric_writer.py metrics.jsonl and TensorBoard events
  preemption.py    SIGTERM -> save and exit
  evaluate_run.py  AutoAttack-style evaluation of a run's learner (the evaluate CLI)
  export.py        a run's learner as a PyTorch state_dict
  suite.py         several runs trained, evaluated alike and compared
"""
