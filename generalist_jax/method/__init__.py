"""The Generalist method: expert tasks, schedules, the meta-update and the step.

  tasks.py      what an expert trains on: one factory + one row in TASKS per task
  schedules.py  lr, mixing weights, EMA decay and sync as pure functions of the step
                (one function + one row in LR_SCHEDULES / SYNC_SCHEDULES per kind)
  timescale.py  steps -> schedule time; the run-relative EMA cap and sync windows
  clock.py      RunClock: the run's schedules, built once from the config
  meta.py       expert EMAs, the global learner, redistribution (pure pytree maps)
  step.py       TrainState, Setup, the jitted train step of all experts
  stacked.py    experts as one vmapped update (an option measured slower on CPU)
"""
