r"""Speed of the training steps and of APGD-CE: JAX (what users run) vs PyTorch.

  python experiments/benchmarks/bench.py                 # full: ~30+ min on 2 cores
  python experiments/benchmarks/bench.py --quick         # smoke run: SmallCNN only

Per model and batch size, for each step kind
  natural      one natural expert                      (step_lib.train_step)
  pgd          one l-inf PGD-K expert (PGD-AT)         (step_lib.train_step)
  generalist2  natural + l-inf PGD-K + meta-update     (step_lib.train_step)
  generalist4  natural + l-inf/l2/l1 PGD-K experts     (step_lib.train_step)
  apgd_ce      APGD-CE evaluation (l-inf, --apgd_steps) (jitted.attack_batch_fn)
the JAX side is the real jitted step (`step_lib.jit_train_step` on a config from
`config_lib`); the PyTorch side runs the same step on the `torch_models` twin:
input-only gradients inside the attack (parameters frozen, requires_grad on
the input), SGD momentum + weight decay, the same EMA / global-learner update.
JAX and PyTorch repetitions alternate, so machine load hits both alike; times
are medians after a warm-up. Printed per line: seconds, images/s, achieved
GFLOP/s, the JAX/PyTorch throughput ratio (> 1: JAX faster), compile time,
memory; then each Generalist step over the PGD-AT step vs its work count.

FLOPs: XLA's cost analysis of the model's eval forward pass (HloCostAnalysis,
multiply-adds counted as 2) times the pass count of the step, with a backward
pass counted as one forward for the input gradient and one for the weight
gradient: natural 3, PGD-K 2K+3, Generalist-2 2K+6, Generalist-4 6K+12,
APGD-CE 2(K+1) (+1 final forward). Both frameworks are credited the same count.
Memory: XLA's buffer assignment for the compiled JAX step (arguments + outputs
+ temporaries), and for both frameworks the peak rise of the process RSS during
their first call (sampled every 5 ms; later calls reuse PyTorch's cached
allocations and would show no rise).

Writes experiments/benchmarks/results/<machine>.json and .md (machine: CPU
model, cores, library versions, `uptime` load before and after).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from generalist_jax import config as config_lib  # noqa: E402
from generalist_jax import data as data_lib  # noqa: E402
from generalist_jax import host_memory  # noqa: E402
from generalist_jax import models  # noqa: E402
from generalist_jax import parallel  # noqa: E402
from generalist_jax.attacks import apgd_loop  # noqa: E402
from generalist_jax.attacks import autoattack  # noqa: E402
from generalist_jax.config import validation
from generalist_jax.evaluation import jitted
from generalist_jax.evaluation import runner
from generalist_jax.method import step as step_lib

STEP_KINDS = ('natural', 'pgd', 'generalist2', 'generalist4', 'apgd_ce')
CIFAR_INFO = data_lib.DatasetInfo(10, (32, 32, 3), (0.4914, 0.4822, 0.4465),
                                  (0.2470, 0.2435, 0.2616))
ADV_NORMS = ('linf', 'l2', 'l1')  # generalist4's PGD experts

# ----------------------------------------------------------------------------
# Configs: the real ones, with the model and K of the benchmark.
# ----------------------------------------------------------------------------


def _pgd(norm: str, k: int):
  eps = autoattack.DEFAULT_EPS[norm]
  return config_lib.pgd_attack(eps=eps, step_size=2.5 * eps / k, steps=k, norm=norm)


def step_config(kind: str, model_fields: dict, batch: int, k: int, compute_dtype: str = 'float32'):
  """A config_lib config whose train_step is the benchmarked step."""
  if kind == 'natural':
    c = config_lib.single_expert_config('natural', 'global/clean_acc')
  elif kind == 'pgd':
    c = config_lib.single_expert_config('robust', 'global/robust_acc')
  else:
    c = config_lib.base_config()
    c.experts = config_lib.generalist_experts()
    if kind == 'generalist4':
      robust = c.experts.robust
      del c.experts['robust']
      share = tuple(b / len(ADV_NORMS) for b in config_lib.ROBUST_MIX)
      for norm in ADV_NORMS:
        c.experts[f'robust_{norm}'] = config_lib.expert('pgd', robust.optimizer, mix_values=share,
                                                        attack=_pgd(norm, k))
  for name in c.experts.keys():
    c.experts[name].attack = _pgd(c.experts[name].attack.norm, k)
  c.model.update(model_fields)
  c.batch_size = batch
  c.compute_dtype = compute_dtype
  validation.validate_config(c)
  return c


def work_units(kind: str, k: int, apgd_steps: int) -> int:
  """Forward-pass equivalents of one step (see the module docstring)."""
  return {
      'natural': 3, 'pgd': 2 * k + 3, 'generalist2': 2 * k + 6,
      'generalist4': 3 + len(ADV_NORMS) * (2 * k + 3), 'apgd_ce': 2 * (apgd_steps + 1) + 1
  }[kind]


# ----------------------------------------------------------------------------
# Measuring.
# ----------------------------------------------------------------------------


class PeakRSS:
  """Peak rise of this process's RSS while the block runs (a 5 ms sampler)."""

  def __init__(self):
    self._proc = psutil.Process()

  def __enter__(self):
    self.start = self.peak = self._proc.memory_info().rss
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.wait(0.005):
      self.peak = max(self.peak, self._proc.memory_info().rss)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._proc.memory_info().rss)

  @property
  def rise_mb(self) -> float:
    return (self.peak - self.start) / 2**20


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def forward_flops(model, variables, batch: int) -> float:
  """XLA cost analysis of one eval forward pass at this batch size."""
  x = jnp.zeros((batch, *CIFAR_INFO.image_shape), jnp.float32)
  fwd = jax.jit(lambda v, x: models.apply_model(model, v, x, train=False)[0])
  cost = fwd.lower(variables, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def _memory_mb(compiled) -> float | None:
  m = compiled.memory_analysis()
  if m is None:
    return None
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes -
           m.alias_size_in_bytes)
  return total / 2**20


# ----------------------------------------------------------------------------
# JAX side.
# ----------------------------------------------------------------------------


def _batch(batch: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return {
      'image': rng.uniform(size=(batch, *CIFAR_INFO.image_shape)).astype(np.float32),
      'label': rng.integers(0, CIFAR_INFO.num_classes, batch).astype(np.int32)
  }


class JaxStep:
  """The jitted train step of `config` (donated state carried across calls)."""

  def __init__(self, config, host_batch):
    self.setup = step_lib.make_setup(config, CIFAR_INFO, steps_per_epoch=100)
    mesh = self.setup.mesh
    self.state = parallel.replicate(
        step_lib.create_train_state(self.setup, CIFAR_INFO.image_shape, config.seed), mesh)
    self.batch = parallel.global_batch(host_batch, mesh)
    self.compiled = None

  def compile(self):
    lowered = step_lib.jit_train_step(self.setup).lower(self.state, self.batch)
    self.compile_s = _timed(lambda: setattr(self, 'compiled', lowered.compile()))
    self.memory_mb = _memory_mb(self.compiled)
    return self

  @property
  def variables(self):
    return self.state.experts[0]

  def __call__(self):
    self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))


class JaxAPGD:
  """APGD-CE l-inf as `evaluate` runs it (attack + correctness flags)."""

  def __init__(self, model, variables, host_batch, steps: int):
    spec = runner.AttackSpec('linf', 'apgd-ce', autoattack.DEFAULT_EPS['linf'], (('steps', steps),))
    fn = jitted.attack_batch_fn(jitted.model_apply_fn(model), spec)
    labels = jnp.asarray(host_batch['label'])
    self.args = (variables, jnp.asarray(host_batch['image']), labels, runner.column_key(0, spec),
                 jnp.arange(len(labels), dtype=jnp.int32))
    lowered = fn.lower(*self.args)
    self.compile_s = _timed(lambda: setattr(self, 'compiled', lowered.compile()))
    self.memory_mb = _memory_mb(self.compiled)

  def __call__(self):
    jax.block_until_ready(self.compiled(*self.args))


# ----------------------------------------------------------------------------
# PyTorch side: the same steps on the twin model.
# ----------------------------------------------------------------------------


class TorchSteps:
  """PyTorch versions of the steps; built lazily so torch stays optional."""

  def __init__(self, config, setup, host_batch, threads: int, device: str = 'cpu',
               compute_dtype: str = 'float32'):
    import torch  # pylint: disable=g-import-not-at-top

    from generalist_jax.models import torch_models  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(threads)
    self.torch = torch
    self.F = torch.nn.functional
    self.config, self.setup = config, setup
    make = lambda: torch_models.create_model(config.model, CIFAR_INFO.num_classes, CIFAR_INFO.mean,
                                             CIFAR_INFO.std, CIFAR_INFO.image_shape)
    torch.manual_seed(0)
    first = make()
    copy = lambda: _copied(make(), first)
    self.experts = [first] + [copy() for _ in setup.expert_names[1:]]
    self.emas = [copy() for _ in self.experts]
    self.global_learner = copy()
    self.optimizers = []
    for name, model in zip(setup.expert_names, self.experts):
      o = config.experts[name].optimizer
      self.optimizers.append(
          torch.optim.SGD(model.parameters(), lr=float(setup.clock.lr(0, 0)) or 0.01,
                          momentum=o.momentum, weight_decay=o.weight_decay))
    if device == 'auto':
      device = 'cuda' if torch.cuda.is_available() else 'cpu'
    self.device = device
    for model in self.experts + self.emas + [self.global_learner]:
      model.to(device)  # in place: the optimizers keep their parameters
    self.x = torch.from_numpy(host_batch['image'].transpose(0, 3, 1, 2).copy()).to(device)
    self.y = torch.from_numpy(host_batch['label'].astype(np.int64)).to(device)
    self.autocast = (torch.autocast(device_type=device, dtype=torch.bfloat16)
                     if compute_dtype == 'bfloat16' else _null())
    self.step_count = 0

  def timed(self, fn):
    """fn(), under autocast, synchronised so that GPU work is inside the timing."""

    def call():
      with self.autocast:
        fn()
      if self.device != 'cpu':
        self.torch.cuda.synchronize()

    return call

  # --- attacks: input gradients only -----------------------------------------

  def _input_grad(self, model, x_adv):
    x_adv = x_adv.detach().requires_grad_(True)
    loss = self.F.cross_entropy(model(x_adv), self.y, reduction='sum')
    return self.torch.autograd.grad(loss, x_adv)[0]

  def pgd(self, model, attack) -> 'torch.Tensor':  # noqa: F821 (torch: imported lazily)
    """PGD-K with a random start; l2 / l1: the usual project-then-clip code."""
    torch, x = self.torch, self.x
    eps, alpha, norm = float(attack.eps), float(attack.step_size), attack.norm
    flat = lambda t: t.flatten(1)
    per_ex = lambda v: v.view(-1, 1, 1, 1)
    model.eval()
    model.requires_grad_(False)
    if norm == 'linf':
      delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
      delta = torch.randn_like(x)
      delta = delta * per_ex(eps / flat(delta).norm(p=2 if norm == 'l2' else 1, dim=1))
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(int(attack.steps)):
      g = self._input_grad(model, x + delta)
      if norm == 'linf':
        delta = (delta + alpha * g.sign()).clamp(-eps, eps)
      elif norm == 'l2':
        delta = delta + alpha * g / per_ex(flat(g).norm(dim=1) + 1e-12)
        delta = delta * per_ex((eps / (flat(delta).norm(dim=1) + 1e-12)).clamp(max=1.0))
      else:  # sparse top-5% sign step, then the sort-based l1-ball projection
        gf = flat(g)
        k = max(1, int(0.05 * gf.shape[1]))
        thresh = gf.abs().topk(k, dim=1).values[:, -1:]
        step = gf.sign() * (gf.abs() >= thresh)
        step = step / step.abs().sum(1, keepdim=True).clamp(min=1)
        delta = (flat(delta) + alpha * step).view_as(x)
        delta = _torch_l1_ball(delta, eps)
      delta = (x + delta).clamp(0, 1) - x
    model.requires_grad_(True)
    return (x + delta).detach()

  def apgd_ce(self, model, steps: int):
    return _torch_apgd_ce(self.torch, self.F, model, self.x, self.y, autoattack.DEFAULT_EPS['linf'],
                          steps)

  # --- steps ---------------------------------------------------------------

  def train_step(self):
    torch = self.torch
    for i, name in enumerate(self.setup.expert_names):
      model, task = self.experts[i], self.config.experts[name]
      x = self.pgd(model, task.attack) if task.task == 'pgd' else self.x
      model.train()
      opt = self.optimizers[i]
      opt.zero_grad(set_to_none=True)
      self.F.cross_entropy(model(x), self.y).backward()
      opt.step()
    # Meta-update, as meta.meta_update: expert EMAs, global <- EMA of their mix.
    t = self.step_count
    decay = float(self.setup.clock.ema_decay(t))
    weights = [float(w) for w in self.setup.clock.mix_weights(t)]
    with torch.no_grad():
      for ema, model in zip(self.emas, self.experts):
        torch._foreach_lerp_(_floats(ema), _floats(model), 1.0 - decay)
      mixed = [
          sum(w * e
              for w, e in zip(weights, leaves))
          for leaves in zip(*[_floats(e) for e in self.emas])
      ]
      torch._foreach_lerp_(_floats(self.global_learner), mixed, 1.0 - decay)
    self.step_count += 1


def _floats(model):
  return [t for t in model.state_dict().values() if t.is_floating_point()]


def _copied(model, source):
  model.load_state_dict(source.state_dict())
  return model


def _torch_l1_ball(delta, eps: float):
  """Duchi et al.'s sort-based projection onto the l1 ball (per example)."""
  import torch  # pylint: disable=g-import-not-at-top
  v = delta.flatten(1)
  u = v.abs().sort(dim=1, descending=True).values
  css = u.cumsum(1)
  ks = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
  rho = ((u * ks) > (css - eps)).sum(1, keepdim=True).clamp(min=1)
  theta = ((css.gather(1, rho - 1) - eps) / rho).clamp(min=0)
  out = v.sign() * (v.abs() - theta).clamp(min=0)
  return out.view_as(delta)


def _torch_apgd_ce(torch, F, model, x, y, eps: float, steps: int):
  """APGD-CE l-inf (Croce & Hein 2020, as auto-attack's apgd-ce): the same
  step-size checkpoints as apgd_loop.py, momentum 0.75, best-point restarts."""
  model.eval()
  model.requires_grad_(False)
  is_check, window = apgd_loop.checkpoint_schedule(steps, 'linf')
  per_ex = lambda v: v.view(-1, 1, 1, 1)

  def loss_grad(x_adv):
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y, reduction='none')
    grad = torch.autograd.grad(loss.sum(), x_adv)[0]
    return loss.detach(), logits.detach().argmax(1) != y, grad

  project = lambda z: torch.min(torch.max(z, x - eps), x + eps).clamp(0, 1)
  x_adv = project(x + torch.empty_like(x).uniform_(-eps, eps))
  loss, fooled, grad = loss_grad(x_adv)
  step = torch.full_like(loss, 2 * eps)
  best, best_loss, grad_best, adv = x_adv.clone(), loss.clone(), grad.clone(), x_adv.clone()
  prev, loss_prev, increases = x_adv.clone(), loss.clone(), torch.zeros_like(loss)
  best_at_check, reduced = loss.clone(), torch.ones_like(fooled)
  for i in range(steps):
    a = 0.75 if i > 0 else 1.0
    z = project(x_adv + per_ex(step) * grad.sign())
    new = project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - prev))
    prev = x_adv
    x_adv = new
    loss, fooled_now, grad = loss_grad(x_adv)
    adv = torch.where(per_ex(fooled_now), x_adv, adv)
    fooled = fooled | fooled_now
    improved = loss > best_loss
    best = torch.where(per_ex(improved), x_adv, best)
    grad_best = torch.where(per_ex(improved), grad, grad_best)
    best_loss = torch.where(improved, loss, best_loss)
    increases = increases + (loss > loss_prev).float()
    loss_prev = loss
    if is_check[i]:
      oscillated = increases <= window[i] * 0.75
      stalled = ~reduced & (best_at_check >= best_loss)
      reduce = oscillated | stalled
      step = torch.where(reduce, step / 2, step)
      x_adv = torch.where(per_ex(reduce), best, x_adv)
      grad = torch.where(per_ex(reduce), grad_best, grad)
      reduced, best_at_check, increases = reduce, best_loss.clone(), torch.zeros_like(loss)
  out = torch.where(per_ex(fooled), adv, best)
  correct = model(out).argmax(1) == y
  model.requires_grad_(True)
  return correct


# ----------------------------------------------------------------------------
# One line of the table.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Line:
  model: str
  batch: int
  kind: str
  work_units: int
  gflop: float
  jax_s: float
  torch_s: float | None
  compile_s: float
  jax_xla_memory_mb: float | None
  jax_rss_rise_mb: float
  torch_rss_rise_mb: float | None
  jax_reps: list
  torch_reps: list
  torch_gpu_peak_mb: float | None = None  # CUDA: torch.cuda.max_memory_allocated

  @property
  def ratio(self):  # JAX/PyTorch throughput
    return None if self.torch_s is None else self.torch_s / self.jax_s

  def row(self) -> dict:
    d = dataclasses.asdict(self)
    d.update(jax_img_s=self.batch / self.jax_s, jax_gflop_s=self.gflop / self.jax_s,
             torch_img_s=self.torch_s and self.batch / self.torch_s, torch_gflop_s=self.torch_s and
             self.gflop / self.torch_s, jax_over_torch_throughput=self.ratio)
    return d


def measure(kind: str, model_name: str, model_fields: dict, batch: int, args) -> Line:
  """Compiles, warms up, then alternates JAX and PyTorch repetitions."""
  k = args.k
  host = _batch(batch)
  config = step_config('pgd' if kind == 'apgd_ce' else kind, model_fields, batch, k,
                       args.compute_dtype)
  jax_step = JaxStep(config, host)
  model = jax_step.setup.model
  flops = forward_flops(model, jax_step.variables, batch)
  if kind == 'apgd_ce':
    jax_fn = JaxAPGD(model, jax_step.variables, host, args.apgd_steps)
  else:
    jax_fn = jax_step.compile()
  torch_fn = None
  if not args.no_torch:
    ts = TorchSteps(config, jax_step.setup, host, args.torch_threads, args.torch_device,
                    args.compute_dtype)
    torch_fn = ts.timed(ts.train_step if kind !=
                        'apgd_ce' else lambda: ts.apgd_ce(ts.global_learner, args.apgd_steps))
  reps = args.reps_for(model_name, kind)
  gpu_torch = torch_fn is not None and ts.device != 'cpu'
  if gpu_torch:
    ts.torch.cuda.reset_peak_memory_stats()
  jax_times, torch_times = [], []
  jax_rss, torch_rss = PeakRSS(), PeakRSS()
  for rep in range(args.warmup + reps):
    warm = rep >= args.warmup
    with jax_rss if rep == 0 else _null():  # first call: allocations included
      t = _timed(jax_fn)
    if warm:
      jax_times.append(t)
    if torch_fn is not None:
      with torch_rss if rep == 0 else _null():
        t = _timed(torch_fn)
      if warm:
        torch_times.append(t)
  line = Line(
      model=model_name, batch=batch, kind=kind, work_units=work_units(kind, k, args.apgd_steps),
      gflop=flops * work_units(kind, k, args.apgd_steps) / 1e9, jax_s=statistics.median(jax_times),
      torch_s=statistics.median(torch_times) if torch_times else None, compile_s=jax_fn.compile_s,
      jax_xla_memory_mb=jax_fn.memory_mb, jax_rss_rise_mb=jax_rss.rise_mb,
      torch_rss_rise_mb=torch_rss.rise_mb if torch_fn else None, jax_reps=jax_times,
      torch_reps=torch_times,
      torch_gpu_peak_mb=(ts.torch.cuda.max_memory_allocated() / 2**20 if gpu_torch else None))
  return line


class _null:

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


# ----------------------------------------------------------------------------
# Machine description, reports.
# ----------------------------------------------------------------------------


def uptime() -> str:
  try:
    return subprocess.run(['uptime'], capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'load average: ' + ', '.join(f'{v:.2f}' for v in os.getloadavg())


def machine() -> dict:
  cpu = platform.processor() or ''
  try:
    text = pathlib.Path('/proc/cpuinfo').read_text()
    cpu = re.search(r'model name\s*:\s*(.*)', text).group(1).strip()
    flags = re.search(r'flags\s*:\s*(.*)', text).group(1).split()
    simd = [f for f in ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile') if f in flags]
  except (OSError, AttributeError):
    simd = []
  versions = {'python': platform.python_version(), 'jax': jax.__version__, 'numpy': np.__version__}
  for mod in ('jaxlib', 'flax', 'optax', 'torch'):
    try:
      versions[mod] = __import__(mod).__version__
    except ImportError:
      pass
  return {
      'cpu': cpu, 'simd': simd, 'logical_cores': os.cpu_count(),
      'usable_cores': len(os.sched_getaffinity(0)
                         ), 'memory_gib': round(psutil.virtual_memory().total / 2**30, 1),
      'jax_backend': jax.default_backend(), 'jax_devices': [str(d) for d in jax.devices()],
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'versions': versions,
      'cpu_resident_buffers': host_memory.buffers_resident(), 'platform': platform.platform()
  }


def generalist_ratios(lines: list[Line], k: int) -> list[dict]:
  """Each Generalist step over the PGD-AT step of the same model and batch."""
  by_key = {(l.model, l.batch, l.kind): l for l in lines}
  out = []
  for (model, batch, kind), line in by_key.items():
    base = by_key.get((model, batch, 'pgd'))
    if not kind.startswith('generalist') or base is None:
      continue
    work = line.work_units / base.work_units
    row = {
        'model': model, 'batch': batch, 'kind': kind, 'work_count': work,
        'jax_ratio': line.jax_s / base.jax_s
    }
    row['jax_ratio_over_work'] = row['jax_ratio'] / work
    if line.torch_s and base.torch_s:
      row['torch_ratio'] = line.torch_s / base.torch_s
    out.append(row)
  return out


def _fmt(v, spec='.2f'):
  return '-' if v is None else format(v, spec)


def markdown(result: dict) -> str:
  m = result['machine']
  lines = [
      f"# Benchmark: {m['cpu']} ({m['usable_cores']} cores usable), "
      f"{m['jax_backend']}", '', f"Command: `{result['command']}`", '',
      f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}; "
      f"torch threads {result['settings']['torch_threads']}; "
      f"XLA_FLAGS='{m['xla_flags']}'; host_memory.keep_cpu_buffers_resident() applied: "
      f"{m.get('cpu_resident_buffers')}.", '',
      f"Load: before `{result['uptime_before']}`; after `{result['uptime_after']}`.", '',
      f"Compute dtype {result['settings'].get('compute_dtype', 'float32')}. "
      f"PGD K={result['settings']['k']}, APGD-CE steps={result['settings']['apgd_steps']};"
      f" median of reps after {result['settings']['warmup']} warm-up, JAX and PyTorch "
      'alternating. GFLOP: XLA cost analysis of the forward pass x work units.', '',
      '| model | batch | step | JAX s | PyTorch s | JAX img/s | PyTorch img/s | '
      'JAX GFLOP/s | PyTorch GFLOP/s | JAX/PyTorch | compile s | XLA MB | '
      'JAX RSS+ MB | PyTorch RSS+ MB | PyTorch GPU peak MB |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
  ]
  for r in result['lines']:
    lines.append(f"| {r['model']} | {r['batch']} | {r['kind']} | {_fmt(r['jax_s'], '.3f')} | "
                 f"{_fmt(r['torch_s'], '.3f')} | {_fmt(r['jax_img_s'], '.1f')} | "
                 f"{_fmt(r['torch_img_s'], '.1f')} | {_fmt(r['jax_gflop_s'], '.1f')} | "
                 f"{_fmt(r['torch_gflop_s'], '.1f')} | {_fmt(r['jax_over_torch_throughput'])} | "
                 f"{_fmt(r['compile_s'], '.1f')} | {_fmt(r['jax_xla_memory_mb'], '.0f')} | "
                 f"{_fmt(r['jax_rss_rise_mb'], '.0f')} | {_fmt(r['torch_rss_rise_mb'], '.0f')} | "
                 f"{_fmt(r.get('torch_gpu_peak_mb'), '.0f')} |")
  if result['generalist']:
    lines += [
        '', 'Generalist step / PGD-AT step (same model, batch, run):', '',
        '| model | batch | step | work count | JAX ratio | JAX ratio / work count | '
        'PyTorch ratio |', '|---|---|---|---|---|---|---|'
    ]
    for g in result['generalist']:
      lines.append(f"| {g['model']} | {g['batch']} | {g['kind']} | {g['work_count']:.3f} | "
                   f"{g['jax_ratio']:.3f} | {g['jax_ratio_over_work']:.3f} | "
                   f"{_fmt(g.get('torch_ratio'), '.3f')} |")
  return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------


def parse_model(spec: str) -> tuple[str, dict]:
  """'small_cnn:1', 'preact_resnet18:0.25', 'wrn-34-10:1' -> (label, model config fields)."""
  name, _, width = spec.partition(':')
  fields = {'name': name, 'width': float(width or 1.0)}
  if name == 'small_cnn':
    fields['batch_norm'] = True
  wrn = re.fullmatch(r'wrn-(\d+)-(\d+)', name)
  if wrn:
    fields.update(name='wide_resnet', depth=int(wrn[1]), widen_factor=int(wrn[2]))
  return spec, fields


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--quick', action='store_true',
                 help='smoke run: SmallCNN at batch 32, K=2, APGD 5 steps, 1 rep')
  p.add_argument(
      '--models', default='small_cnn:1@128,preact_resnet18:0.25@128,'
      'preact_resnet18:1@32', help='model:width@batch[/kind+kind],... (the '
      'optional /kinds limit that model to some of --kinds)')
  p.add_argument('--kinds', default=','.join(STEP_KINDS))
  p.add_argument('--k', type=int, default=10, help='PGD steps of the training attack')
  p.add_argument('--apgd_steps', type=int, default=20)
  p.add_argument('--reps', type=int, default=5)
  p.add_argument('--slow_reps', type=int, default=3,
                 help='reps for PreAct-ResNet-18 width >= 1 (tens of seconds per step)')
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--torch_threads', type=int, default=2)
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--compute_dtype', default='float32', choices=('float32', 'bfloat16'),
                 help='JAX: config.compute_dtype; PyTorch: autocast to the same dtype')
  p.add_argument('--torch_device', default='auto', help="'auto' (cuda if there), 'cpu', 'cuda'")
  p.add_argument(
      '--budget_s', type=float, default=None,
      help='measure no new line after this many seconds (the rest are listed '
      'as skipped)')
  p.add_argument('--machine', default=None, help='results file name (default: from the CPU)')
  p.add_argument('--out_dir', default=str(ROOT / 'experiments' / 'benchmarks' / 'results'))
  if p.parse_args(argv).quick:  # quick changes the defaults; explicit flags still win
    p.set_defaults(models='small_cnn:0.5@32', k=2, apgd_steps=5, reps=1, slow_reps=1)
  args = p.parse_args(argv)
  args.reps_for = lambda model, kind: (args.slow_reps if model.startswith(
      ('preact_resnet18', 'resnet18', 'wide_resnet')) and float(model.partition(':')[2] or 1) >= 1
                                       else args.reps)
  return args


def machine_name(m: dict) -> str:
  slug = re.sub(r'[^a-z0-9]+', '-', m['cpu'].lower()).strip('-') or 'unknown-cpu'
  return f"{slug}-{m['usable_cores']}c-{m['jax_backend']}"


def main(argv=None) -> dict:
  args = parse_args(argv)
  kinds = [k for k in args.kinds.split(',') if k]
  unknown = set(kinds) - set(STEP_KINDS)
  if unknown:
    raise ValueError(f'--kinds: unknown {sorted(unknown)}; use {STEP_KINDS}')
  specs = []
  for item in args.models.split(','):
    item, _, only = item.partition('/')
    spec, _, batch = item.partition('@')
    specs.append(
        (*parse_model(spec), int(batch or
                                 128), [k for k in kinds if not only or k in only.split('+')]))
  result = {
      'command': ' '.join([sys.executable] + sys.argv) if argv is None else 'bench.main(' +
                 ' '.join(argv) + ')', 'machine': machine(), 'uptime_before': uptime(),
      'settings': {
          'k': args.k, 'apgd_steps': args.apgd_steps, 'reps': args.reps,
          'compute_dtype': args.compute_dtype, 'slow_reps': args.slow_reps, 'warmup': args.warmup,
          'torch_threads': args.torch_threads, 'quick': args.quick
      }, 'lines': []
  }
  out_dir = pathlib.Path(args.out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = out_dir / (args.machine or machine_name(result['machine']))
  lines = []
  started = time.perf_counter()
  result['skipped'] = []
  print(f"{result['machine']['cpu']}: {result['uptime_before']}", flush=True)
  for label, fields, batch, model_kinds in specs:
    for kind in model_kinds:
      if args.budget_s is not None and time.perf_counter() - started > args.budget_s:
        result['skipped'].append(f'{label}@{batch} {kind}: over --budget_s={args.budget_s:g}')
        continue
      line = measure(kind, label, fields, batch, args)
      lines.append(line)
      print(
          f'{label:>22} b={batch:<4} {kind:<12} JAX {line.jax_s:8.3f} s  PyTorch '
          f'{_fmt(line.torch_s, "8.3f")} s  JAX/PyTorch {_fmt(line.ratio)}  '
          f'{line.gflop / line.jax_s:6.1f} GFLOP/s  compile {line.compile_s:6.1f} s', flush=True)
      _write(stem, result, lines, args.k)  # after every line: a cut-off run keeps its numbers
  for g in result['generalist']:
    print(
        f"{g['model']} b={g['batch']} {g['kind']}/pgd: JAX {g['jax_ratio']:.3f} "
        f"(work count {g['work_count']:.3f}, ratio/work {g['jax_ratio_over_work']:.3f}), "
        f"PyTorch {_fmt(g.get('torch_ratio'), '.3f')}", flush=True)
  print(f'wrote {stem}.json and .md')
  return result


def _write(stem: pathlib.Path, result: dict, lines: list, k: int) -> None:
  result['lines'] = [l.row() for l in lines]
  result['generalist'] = generalist_ratios(lines, k)
  result['uptime_after'] = uptime()
  stem.with_suffix('.json').write_text(json.dumps(result, indent=2))
  stem.with_suffix('.md').write_text(markdown(result))


if __name__ == '__main__':
  host_memory.keep_cpu_buffers_resident()  # before the jits are made
  main()
