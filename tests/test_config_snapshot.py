"""Every shipped config, under every config arg in use, builds exactly the snapshot in
tests/data/config_snapshot.json: a config's numbers change only by a deliberate
`python tests/config_snapshot.py` (the diff of that file then shows what changed)."""
import copy
import json

from tests import config_snapshot


def test_every_config_matches_its_snapshot():
  with open(config_snapshot.SNAPSHOT) as f:
    saved = json.load(f)
  lines = config_snapshot.differences(saved, config_snapshot.snapshot())
  assert not lines, ('configs differ from tests/data/config_snapshot.json (if meant, run '
                     '`python tests/config_snapshot.py` and commit the file):\n' + '\n'.join(lines))


def test_a_changed_number_is_named_with_its_field():
  current = config_snapshot.snapshot()
  saved = copy.deepcopy(current)
  saved['pgd_at_cifar10']['fields']['experts.robust.optimizer.weight_decay'] = 5e-4
  saved['pgd_at_cifar10']['sha256']['None'] = 'x'
  saved['generalist_cifar10']['arg_fields']['smoke']['changed']['model.width'] = 0.25
  saved['generalist_cifar10']['sha256']['smoke'] = 'x'
  saved['trades_cifar10']['sha256']['epochs=5'] = 'x'
  assert config_snapshot.differences(saved, current) == [
      "configs/generalist_cifar10.py:smoke: model.width: snapshot 0.25, now 0.5",
      "configs/pgd_at_cifar10.py:None: experts.robust.optimizer.weight_decay: snapshot "
      "0.0005, now 0.0035",
      'configs/trades_cifar10.py:epochs=5: the JSON differs from the snapshot (see '
      'configs/generalist_cifar10.py:epochs=5 for the fields)'
  ]
