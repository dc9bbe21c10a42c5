"""Run configs: one `ml_collections.ConfigDict` per run (the front door).

  builders.py    `base_config()` (every field, one comment each: the base of every file in
                 configs/), attack / optimizer / expert builders, `parse_eps`
  presets.py     the scale switches of the config arg (`FILE.py:smoke,epochs=N`), and
                 shortcuts building the paper runs' experts for tests and benchmarks
  schema.py      ConfigError and the field / type check
  validation.py  the up-front checks, one function per concern (imports jax and the
                 registries, so it is not imported here: configs stay light)
"""
from generalist_jax.config.builders import (EPS_8, MULTI_NORM_EPS, STEP_2, FractionParser,
                                            base_config, compare_config, expert, norm_attacks,
                                            parse_eps, pgd_attack, sgd)
from generalist_jax.config.presets import (REFERENCE_EPOCHS, RESNET_LR_EPOCHS, RESNET_LR_VALUES,
                                           ROBUST_MIX, apply_arg, baseline_config,
                                           generalist_experts, miniature, norm_experts, parse_arg,
                                           robust_expert, scale_attack_steps, scale_epochs,
                                           single_expert_config, smoke)
from generalist_jax.config.schema import ConfigError

__all__ = [
    'EPS_8', 'MULTI_NORM_EPS', 'REFERENCE_EPOCHS', 'RESNET_LR_EPOCHS', 'RESNET_LR_VALUES',
    'ROBUST_MIX', 'STEP_2', 'ConfigError', 'FractionParser', 'apply_arg', 'base_config',
    'baseline_config', 'compare_config', 'expert', 'generalist_experts', 'miniature',
    'norm_experts', 'norm_attacks', 'parse_arg', 'parse_eps', 'pgd_attack', 'robust_expert',
    'scale_attack_steps', 'scale_epochs', 'sgd', 'single_expert_config', 'smoke'
]
