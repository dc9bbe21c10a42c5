"""PyTorch natural step, PreAct-ResNet-18 width 0.25 batch 64, with 1 vs 2 intra-op threads,
alternating (shows what oversubscription does to 2 threads on a loaded 2-core machine).

  PYTHONPATH=. python experiments/benchmarks/torch_threads_probe.py
"""
import statistics
import time

import ml_collections
import torch

from generalist_jax.models import torch_models

m = torch_models.create_model(ml_collections.ConfigDict(dict(name='preact_resnet18', width=0.25)), 10, (0.5,)*3, (0.25,)*3)
x = torch.rand(64, 3, 32, 32); y = torch.randint(0, 10, (64,))
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
def step():
  opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
res = {1: [], 2: []}
for rep in range(6):
  for n in (1, 2):
    torch.set_num_threads(n); t = time.perf_counter(); step(); dt = time.perf_counter() - t
    if rep: res[n].append(dt)
for n, v in res.items(): print(n, 'threads', [round(a, 3) for a in v], 'median', round(statistics.median(v), 3))
