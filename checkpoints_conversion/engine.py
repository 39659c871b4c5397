"""The conversion engine shared by every source format: declarative tables, hooks, checks and the key report.

A source format is described by a :class:`Table`, plain data:

* ``rules``: (target regex, source key template(s), hook). A target is a variable path of our NNX model written
  with dots (``conv2d.s1.pathway0_stem.conv.kernel``, list indices as numbers); the templates are expanded with the
  regex match (``re.Match.expand`` syntax, or a callable of the match for index arithmetic); the hook maps the
  source arrays to the target array and back (:class:`Hook`: transposes, stacking of LSTM directions, copies);
* ``aliases``: source keys that are a second name of another key (shared classifiers, tied embeddings, an encoder
  stored twice): when both are present they must be bit-identical, and the reverse direction writes both;
* ``skip``: source keys that are deliberately not model parameters (``num_batches_tracked``), with the reason;
* ``keep_init``: targets the source does not have by design (new modules), kept at the model's init values;
* ``defaults``: targets filled with a fixed value when their source key is absent (HF's zero ``final_logits_bias``);
* ``hints``: regexes over target paths / source keys -> the config key to change when they do not fit.

:func:`convert` applies a table to a state dict, checks the result against the model's own variable tree (names and
shapes from ``nnx.eval_shape`` or a concrete model: scenic ``inspect_params`` style) and returns a pure nested dict
plus a :class:`Report` (mapped, adapted, aliased, skipped, kept at init, defaulted, ignored; and the errors: missing,
unexpected, shape mismatches). Any error raises :class:`ConversionError` with a one-line summary unless the keys
involved are covered by ``ignore`` patterns (``fnmatch`` over source keys and target paths); nothing is dropped
silently. :func:`to_state_dict` runs the same table backwards (Flax -> PyTorch names and layouts).

Pure NumPy; torch is only imported by :func:`read_torch` to open ``.pt``/``.pth``/``.ckpt``/``.bin`` files.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

Template = str | Callable[[re.Match], str]


class ConversionError(ValueError):
  """A checkpoint that cannot be converted into the model; the message names the keys and the problem."""


class MissingKeysError(ConversionError, KeyError):
  """The checkpoint lacks keys the model needs (a KeyError too, for callers that catch that)."""

  def __str__(self) -> str:  # KeyError would quote the message
    return str(self.args[0]) if self.args else ''


# ----------------------------------------------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Hook:
  """source arrays -> target array (``forward``) and target array -> source arrays (``backward``)."""
  name: str
  forward: Callable[..., np.ndarray]
  backward: Callable[[np.ndarray], tuple[np.ndarray, ...]]
  nsources: int = 1


def _t(perm):
  inv = tuple(int(i) for i in np.argsort(perm))
  return Hook(f'transpose{tuple(perm)}', lambda x: np.ascontiguousarray(np.transpose(x, perm)),
              lambda y: (np.ascontiguousarray(np.transpose(y, inv)),))


COPY = Hook('copy', lambda x: x, lambda y: (y,))
LINEAR = _t((1, 0))                  # torch Linear (out, in) -> kernel (in, out)
CONV1D = _t((2, 1, 0))               # torch Conv1d (O, I, K) -> (K, I, O)
CONV3D = _t((2, 3, 4, 1, 0))         # torch Conv3d (O, I, T, H, W) -> (T, H, W, I, O)
# Two LSTM directions (forward, `_reverse`) stacked on a leading axis, matrices transposed (4H, in) -> (in, 4H).
STACK_T = Hook('stack(transpose)', lambda f, r: np.stack([f.T, r.T]),
               lambda y: (np.ascontiguousarray(y[0].T), np.ascontiguousarray(y[1].T)), nsources=2)
STACK = Hook('stack', lambda f, r: np.stack([f, r]), lambda y: (y[0].copy(), y[1].copy()), nsources=2)


@dataclasses.dataclass(frozen=True)
class Rule:
  target: str                        # regex (fullmatch) over the dotted target path
  sources: tuple[Template, ...]      # one template per hook input
  hook: Hook = COPY

  def __post_init__(self):
    if len(self.sources) != self.hook.nsources:
      raise ValueError(f'rule {self.target!r}: hook {self.hook.name} takes {self.hook.nsources} sources')


def rule(target: str, *sources: Template, hook: Hook = COPY) -> Rule:
  return Rule(target, tuple(sources), hook)


@dataclasses.dataclass(frozen=True)
class Alias:
  """``alias`` (regex) is a second name of ``canonical`` (template); backwards ``canonical_re`` -> ``alias_t``."""
  alias: str
  canonical: Template
  canonical_re: str
  alias_t: Template


def alias(alias_re: str, canonical: str, canonical_re: str | None = None, alias_t: str | None = None) -> Alias:
  """Literal keys need only the first two arguments; patterns with groups give the reverse pair too."""
  if canonical_re is None:
    canonical_re, alias_t = re.escape(canonical), alias_re.replace('\\', '')
  return Alias(alias_re, canonical, canonical_re, alias_t)


@dataclasses.dataclass(frozen=True)
class Table:
  """One source format (see the module docstring)."""
  name: str
  rules: tuple[Rule, ...]
  aliases: tuple[Alias, ...] = ()
  skip: tuple[tuple[str, str], ...] = ()                  # (source key regex, reason)
  keep_init: tuple[tuple[str, str], ...] = ()             # (target regex, reason)
  defaults: tuple[tuple[str, Callable[[tuple], np.ndarray], str], ...] = ()  # (target regex, fn(shape), reason)
  hints: tuple[tuple[str, str], ...] = ()                 # (target or source regex, what to change)
  extras: Callable[[dict], dict] | None = None            # reverse only: extra source keys (counters)

  def prefixed(self, target_prefix: str = '', source_prefix: str = '', name: str | None = None) -> 'Table':
    """The same table for a model / checkpoint that nests this one under a prefix (e.g. ``model.`` and
    ``translation_network.model.``)."""
    tp, sp = re.escape(target_prefix), re.escape(source_prefix)

    def src(t: Template) -> Template:
      if callable(t):
        return lambda m, t=t: source_prefix + t(m)
      return source_prefix.replace('\\', '\\\\') + t

    return dataclasses.replace(
        self, name=name or self.name,
        rules=tuple(Rule(tp + r.target, tuple(src(s) for s in r.sources), r.hook) for r in self.rules),
        aliases=tuple(Alias(sp + a.alias, src(a.canonical), sp + a.canonical_re, src(a.alias_t))
                      for a in self.aliases),
        skip=tuple((sp + s, why) for s, why in self.skip),
        keep_init=tuple((tp + t, why) for t, why in self.keep_init),
        defaults=tuple((tp + t, fn, why) for t, fn, why in self.defaults),
        hints=tuple((h if h.startswith('^') else f'(?:{tp}|{sp}){h}', why) for h, why in self.hints),
        extras=None if self.extras is None else (
            lambda sd, f=self.extras: {source_prefix + k: v for k, v in f(
                {k[len(source_prefix):]: v for k, v in sd.items() if k.startswith(source_prefix)}).items()}))

  def __add__(self, other: 'Table') -> 'Table':
    extras = [e for e in (self.extras, other.extras) if e is not None]
    return Table(f'{self.name}+{other.name}', self.rules + other.rules, self.aliases + other.aliases,
                 self.skip + other.skip, self.keep_init + other.keep_init, self.defaults + other.defaults,
                 self.hints + other.hints,
                 (lambda sd: {k: v for e in extras for k, v in e(sd).items()}) if extras else None)


def _expand(t: Template, m: re.Match) -> str:
  return t(m) if callable(t) else m.expand(t)


# ----------------------------------------------------------------------------------------------------------------
# Trees
# ----------------------------------------------------------------------------------------------------------------
def flatten(tree: Mapping) -> dict[tuple, Any]:
  """Nested dict -> {path tuple: leaf}; an NNX ``{'value': x}`` wrapper or a Variable counts as the leaf."""
  out: dict[tuple, Any] = {}

  def walk(node, path):
    if isinstance(node, Mapping) and not (set(node) == {'value'} and not isinstance(node['value'], Mapping)):
      for k, v in node.items():
        walk(v, path + (k,))
    else:
      out[path] = node['value'] if isinstance(node, Mapping) else node
  walk(tree, ())
  return out


def unflatten(flat: Mapping[tuple, Any]) -> dict:
  out: dict = {}
  for path, v in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


def dotted(path: Sequence) -> str:
  return '.'.join(str(p) for p in path)


def model_variables(model) -> dict:
  """The pure nested dict of every variable of an NNX model except RNG state (parameters, BatchNorm statistics,
  buffers): what a checkpoint must provide. Works on abstract models (``nnx.eval_shape``) too."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.RngState)))


def load_into_model(model, pure: Mapping) -> None:
  """Writes a converted pure dict into ``model`` (every non-RNG variable)."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  state = nnx.state(model, nnx.Not(nnx.RngState))
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)


def to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """torch tensors / arrays -> NumPy; bfloat16 / float16 go through float32 (NumPy has no bfloat16)."""
  out = {}
  for k, v in state_dict.items():
    if hasattr(v, 'detach'):
      v = v.detach().cpu()
      if v.is_floating_point() and v.dtype != _torch_float32():
        v = v.float()
      v = v.numpy()
    out[k] = np.asarray(v)
  return out


def _torch_float32():
  import torch  # pylint: disable=import-outside-toplevel
  return torch.float32


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
  """Key-level outcome of one conversion. ``mapped``: target -> (sources, hook); the rest: key -> reason."""
  table: str
  mapped: dict[str, tuple[tuple[str, ...], str]] = dataclasses.field(default_factory=dict)
  adapted: dict[str, str] = dataclasses.field(default_factory=dict)
  aliased: dict[str, str] = dataclasses.field(default_factory=dict)
  skipped: dict[str, str] = dataclasses.field(default_factory=dict)
  kept_init: dict[str, str] = dataclasses.field(default_factory=dict)
  defaulted: dict[str, str] = dataclasses.field(default_factory=dict)
  ignored: dict[str, str] = dataclasses.field(default_factory=dict)
  missing: dict[str, str] = dataclasses.field(default_factory=dict)      # target -> the source key(s) it needs
  unexpected: dict[str, str] = dataclasses.field(default_factory=dict)   # source key -> shape
  mismatched: dict[str, str] = dataclasses.field(default_factory=dict)   # target -> description
  hints: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not (self.missing or self.unexpected or self.mismatched)

  def summary(self) -> str:
    parts = [f'{len(self.mapped)} mapped']
    for name in ('adapted', 'aliased', 'skipped', 'kept_init', 'defaulted', 'ignored', 'missing', 'unexpected',
                 'mismatched'):
      n = len(getattr(self, name))
      if n:
        parts.append(f'{n} {name.replace("_", " ")}')
    return f'[{self.table}] ' + ', '.join(parts)

  def error_line(self) -> str:
    """One line naming the first offending keys of each kind and what to change."""
    bits = []
    for name, d in (('missing', self.missing), ('unexpected', self.unexpected), ('shape mismatch', self.mismatched)):
      if d:
        shown = '; '.join(f'{k} ({v})' if v else k for k, v in list(d.items())[:3])
        more = f' and {len(d) - 3} more' if len(d) > 3 else ''
        bits.append(f'{len(d)} {name}: {shown}{more}')
    hint = f' -> {"; ".join(dict.fromkeys(self.hints))}' if self.hints else ''
    return f'[{self.table}] ' + ' | '.join(bits) + hint

  def format(self, verbose: bool = True) -> str:
    lines = [self.summary()]
    if verbose:
      for tgt, (srcs, hook) in self.mapped.items():
        lines.append(f'  mapped     {tgt} <- {", ".join(srcs)} [{hook}]')
    for name in ('adapted', 'aliased', 'skipped', 'kept_init', 'defaulted', 'ignored', 'missing', 'unexpected',
                 'mismatched'):
      for k, v in getattr(self, name).items():
        lines.append(f'  {name:<10} {k}: {v}')
    for h in dict.fromkeys(self.hints):
      lines.append(f'  hint       {h}')
    return '\n'.join(lines)

  def raise_if_errors(self) -> None:
    if self.ok:
      return
    cls = MissingKeysError if self.missing and not (self.unexpected or self.mismatched) else ConversionError
    raise cls(self.error_line())


def _matches(key: str, patterns: Iterable[str]) -> str | None:
  for p in patterns:
    if fnmatch.fnmatchcase(key, p) or key == p:
      return p
  return None


def _first(regexes: Iterable, key: str):
  for item in regexes:
    m = re.fullmatch(item.target if isinstance(item, Rule) else item[0], key)
    if m:
      return item, m
  return None, None


def _hint(table: Table, key: str, report: Report) -> None:
  item, _ = _first(table.hints, key)
  if item is None:
    for h, why in table.hints:
      if re.match(h, key):
        item = (h, why)
        break
  if item is not None:
    report.hints.append(item[1])


# ----------------------------------------------------------------------------------------------------------------
# Forward: state dict -> pure dict
# ----------------------------------------------------------------------------------------------------------------
def resolve_aliases(table: Table, sd: dict[str, np.ndarray], report: Report) -> dict[str, np.ndarray]:
  """Moves alias keys onto their canonical name (or drops them after checking they are identical)."""
  out = dict(sd)
  for key in list(sd):
    canonical = key
    for _ in range(8):  # follow chains (an alias of a tied name)
      item, m = _first(((a.alias, a) for a in table.aliases), canonical)
      if item is None:
        break
      canonical = _expand(item[1].canonical, m)
    if canonical == key:
      continue
    if canonical in out:
      a, b = out[canonical], sd[key]
      if a.shape != b.shape or not np.array_equal(a, b):
        raise ConversionError(f'[{table.name}] {key} should be the same tensor as {canonical} (a tied / shared '
                              f'weight) but differs ({b.shape} vs {a.shape}); the checkpoint is inconsistent')
      report.aliased[key] = f'same tensor as {canonical}'
    else:
      out[canonical] = sd[key]
      report.aliased[key] = f'used as {canonical}'
    del out[key]
  return out


def convert(table: Table, state_dict: Mapping[str, Any], expected: Mapping, *, ignore: Sequence[str] = (),
            init: Mapping | None = None, strict: bool = True, report: Report | None = None
            ) -> tuple[dict, Report]:
  """Applies ``table`` to ``state_dict`` for a model whose variables are ``expected`` (pure dict of arrays or
  ShapeDtypeStructs, see :func:`model_variables`).

  Args:
    table: the source format.
    state_dict: source key -> array / tensor.
    expected: the model's variable tree (names and shapes).
    ignore: fnmatch patterns over source keys (unexpected ones are then dropped) and target paths (missing or
      mismatched ones then keep their init value).
    init: concrete init values (same tree as ``expected``) for targets kept at init; default ``expected`` itself
      when it holds arrays.
    strict: raise :class:`ConversionError` when anything is missing, unexpected or mismatched.
    report: an existing report to extend (adaptations done before the table, e.g. Caffe2 surgery).

  Returns:
    (pure nested dict with the structure of ``expected``, report).
  """
  report = report or Report(table.name)
  sd = resolve_aliases(table, to_numpy(state_dict), report)
  exp_flat = flatten(expected)
  init_flat = flatten(init) if init is not None else exp_flat
  used: set[str] = set()
  out: dict[tuple, Any] = {}

  def keep(path, tgt, why, bucket):
    value = init_flat.get(path)
    if value is None or not hasattr(value, '__array__'):
      report.missing[tgt] = f'{why}; no init value available (pass a concrete model)'
      return
    out[path] = np.asarray(value)
    bucket[tgt] = why

  for path, want in exp_flat.items():
    tgt = dotted(path)
    shape = tuple(want.shape)
    item, m = _first(table.rules, tgt)
    if item is None:
      k_item, _ = _first(table.keep_init, tgt)
      if k_item is not None:
        keep(path, tgt, k_item[1], report.kept_init)
      elif _matches(tgt, ignore):
        keep(path, tgt, 'ignored (--ignore), left at init', report.ignored)
      else:
        report.missing[tgt] = 'no rule maps this variable'
        _hint(table, tgt, report)
      continue
    r: Rule = item
    srcs = tuple(_expand(s, m) for s in r.sources)
    absent = [s for s in srcs if s not in sd]
    if absent:
      d_item, _ = _first(table.defaults, tgt)
      k_item, _ = _first(table.keep_init, tgt)
      if d_item is not None:
        out[path] = d_item[1](shape).astype(want.dtype)
        report.defaulted[tgt] = d_item[2]
      elif k_item is not None:
        keep(path, tgt, k_item[1], report.kept_init)
      elif _matches(tgt, ignore) or all(_matches(s, ignore) for s in absent):
        keep(path, tgt, 'ignored (--ignore), left at init', report.ignored)
      else:
        report.missing[tgt] = ', '.join(absent)
        if len(absent) == len(srcs):
          _hint(table, tgt, report)
      used.update(s for s in srcs if s in sd)  # reported with the missing partner, not as unexpected
      continue
    used.update(srcs)
    try:
      value = r.hook.forward(*(sd[s] for s in srcs))
    except ValueError as e:  # e.g. stacking directions of different shapes
      report.mismatched[tgt] = f'{", ".join(srcs)}: {e}'
      _hint(table, tgt, report)
      continue
    if tuple(value.shape) != shape:
      if _matches(tgt, ignore):
        keep(path, tgt, f'ignored shape mismatch {value.shape} vs {shape}, left at init', report.ignored)
      else:
        report.mismatched[tgt] = (f'{", ".join(srcs)} gives {tuple(value.shape)} after {r.hook.name}, '
                                  f'the model has {shape}')
        _hint(table, tgt, report)
      continue
    if np.issubdtype(value.dtype, np.floating) and value.dtype != want.dtype:
      value = value.astype(want.dtype)
    out[path] = value
    report.mapped[tgt] = (srcs, r.hook.name)

  for key in sd:
    if key in used:
      continue
    s_item, _ = _first(table.skip, key)
    if s_item is not None:
      report.skipped[key] = s_item[1]
    elif _matches(key, ignore):
      report.ignored[key] = 'ignored (--ignore)'
    else:
      report.unexpected[key] = f'shape {tuple(sd[key].shape)}'
      _hint(table, key, report)
  if strict:
    report.raise_if_errors()
  return unflatten(out), report


# ----------------------------------------------------------------------------------------------------------------
# Backward: pure dict -> state dict
# ----------------------------------------------------------------------------------------------------------------
def to_state_dict(table: Table, pure: Mapping, *, with_aliases: bool = True, with_extras: bool = True
                  ) -> dict[str, np.ndarray]:
  """Runs ``table`` backwards: our variables -> source names and layouts. Aliases (shared / tied weights) are
  written under every name the original state dict has; ``extras`` adds counters such as
  ``num_batches_tracked``. Variables of ``keep_init`` targets without a rule are not written."""
  sd: dict[str, np.ndarray] = {}
  for path, value in flatten(pure).items():
    tgt = dotted(path)
    item, m = _first(table.rules, tgt)
    if item is None:
      if _first(table.keep_init, tgt)[0] is not None:
        continue
      raise ConversionError(f'[{table.name}] no rule maps {tgt} back to a source key')
    arrays = item.hook.backward(np.asarray(value))
    for s, a in zip(item.sources, arrays):
      sd[_expand(s, m)] = a
  if with_aliases:
    for a in table.aliases:
      for key in list(sd):
        m = re.fullmatch(a.canonical_re, key)
        if m is not None:
          sd[_expand(a.alias_t, m)] = sd[key]
  if with_extras and table.extras is not None:
    sd.update(table.extras(sd))
  return sd


# ----------------------------------------------------------------------------------------------------------------
# File reading
# ----------------------------------------------------------------------------------------------------------------
def read_torch(path: str) -> Any:
  """``torch.load`` with ``weights_only=True`` (no arbitrary code); one-line errors for unreadable files."""
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  import torch  # pylint: disable=import-outside-toplevel
  try:
    return torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds for foreign/truncated files
    first = f'{type(e).__name__}: {str(e).strip().splitlines()[0]}' if str(e).strip() else type(e).__name__
    raise ConversionError(f'{path}: not a readable PyTorch checkpoint (truncated or another file type?): '
                          f'{first[:200]}') from e


def save_torch(state_dict: Mapping[str, np.ndarray], path: str, wrap: str | None = None) -> None:
  """Writes a NumPy state dict as a torch file (``{wrap: sd}`` when ``wrap`` is given)."""
  import torch  # pylint: disable=import-outside-toplevel
  sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}
  torch.save({wrap: sd} if wrap else sd, path)
