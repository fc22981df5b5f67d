"""Training and evaluation: ``rlcpc train`` and ``rlcpc eval`` as functions."""

import json
import math
import numbers
import operator
import os
import pathlib
import sys
import tempfile

from . import _native


def presets():
    """The names of the built-in presets (``rlcpc config list``)."""
    return list(_native.presets())


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text):
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest
    of Unicode as it is."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml(value, key):
    """``value`` in TOML syntax (the form ``--set KEY=VALUE`` takes). NumPy scalars count
    as the Python numbers they hold."""
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        value = value.item()  # a NumPy scalar or 0-d array
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        v = operator.index(value)
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"override '{key}': {v} does not fit a 64-bit integer")
        return str(v)
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float.__repr__(v)
    if isinstance(value, (str, os.PathLike)):
        return _toml_string(os.fspath(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v, key) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(
            f"{_toml_string(_key(k, key))} = {_toml(v, f'{key}.{k}')}" for k, v in value.items()
        )
        return "{" + items + "}"
    if value is None:
        raise TypeError(f"override '{key}': None has no TOML form; leave the key out")
    raise TypeError(
        f"override '{key}': {type(value).__name__} has no TOML form (use bool, int, float, str, list or dict)"
    )


def _key(k, where):
    """A config key: a non-empty name without dots, '=' or spaces."""
    if not isinstance(k, str) or not k or any(c in k for c in ".= \t\n"):
        raise TypeError(f"override '{where}': {k!r} is not a config key (a plain name)")
    return k


def _flatten(prefix, value, out):
    """``{"env": {"id": "x"}}`` → ``['env.id="x"']``; tables inside lists stay inline."""
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"override '{prefix}': an empty dict sets nothing")
        for k, v in value.items():
            _flatten(f"{prefix}.{_key(k, prefix)}", v, out)
    else:
        out.append(f"{prefix}={_toml(value, prefix)}")


def _no_none(value, where):
    """Refuses None anywhere in a config dict (TOML has no null), naming the key."""
    if value is None:
        raise TypeError(f"config '{where}': None has no TOML form; leave the key out")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_none(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _no_none(v, f"{where}[{i}]")


def _overrides(overrides):
    """Keyword overrides as ``--set`` strings.

    A section given as a dict (``env={"id": ...}``) sets each key in it; a dotted key
    (``**{"run.total_steps": 10_000}``) sets that key.
    """
    out = []
    for key, value in overrides.items():
        if any(not part for part in key.split(".")):
            raise TypeError(f"override '{key}': not a config key path")
        if not isinstance(value, dict) and "." not in key:
            raise TypeError(
                f"override '{key}': give a config section as a dict "
                f"({key}={{...}}) or a dotted key (**{{'{key}.KEY': value}}); "
                "`rlcpc config show PRESET` lists every key"
            )
        _flatten(key, value, out)
    return out


def train(config=None, *, out=None, seed=None, aux=None, resume=False, quiet=False, **overrides):
    """Trains an agent, as ``rlcpc train``; returns the run directory (a ``pathlib.Path``).

    ``config``: a preset name (:func:`presets`), a config file, or a whole config as a
    dict; ``None`` is the default preset (``cartpole``). Keyword overrides are config
    sections as dicts or dotted keys, in the config's units::

        rlcpc.train("cartpole", env={"id": "gymnasium:CartPole-v1"},
                    run={"total_steps": 50_000})
        rlcpc.train("tmaze-lstm-cpc", **{"aux.steps": 10, "run.mode": "sync"})

    ``out``: the run directory (default ``runs/<config>-<aux>-s<seed>-<unix time>``);
    ``seed`` sets ``run.seed``; ``aux`` is an auxiliary loss, ``"cpc"``, ``"none"``, ...
    (``aux.kind``), or the ``[aux]`` section as a dict;
    ``resume=True`` continues the run in ``out`` from its checkpoint (overrides still
    apply, e.g. a larger ``run.total_steps``); ``quiet`` hides the progress bar and the
    summary line.

    Ctrl-C (KeyboardInterrupt) stops the run at its next step and writes its checkpoint
    before the exception reaches the caller (from the main thread, where Python handles
    signals; a second Ctrl-C exits at once). Training runs on the CPU. The run directory
    holds ``config.toml``, ``metrics.jsonl`` (:func:`read_metrics`), TensorBoard event files
    and ``checkpoint.safetensors``; the summary of the run is in ``train.last_summary``.
    """
    sets = []
    if isinstance(aux, dict):  # the [aux] section, as any other section
        overrides = {"aux": aux, **overrides}
    elif aux is not None:
        sets.append(f"aux.kind={_toml(str(aux), 'aux')}")
    if resume and config is not None:
        raise ValueError(
            "resume=True continues the run in `out` with its own config.toml; leave `config` out"
        )
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise TypeError(f"seed must be a non-negative int, got {seed!r}")
        sets.append(f"run.seed={_toml(seed, 'seed')}")
    sets += _overrides(overrides)
    out = None if out is None else os.fspath(out)
    with tempfile.TemporaryDirectory(prefix="rlcpc-config-") as tmp:
        if isinstance(config, dict):
            _no_none(config, "")
            path = os.path.join(tmp, "python.toml")  # run directories: runs/python-...
            with open(path, "w", encoding="utf-8") as f:
                f.write(_native.toml_from_json(json.dumps(config)))
            config = path
        elif config is not None:
            config = os.fspath(config)
        run_dir, summary, interrupt = _native.train(config, sets, out, resume, quiet)
    summary = json.loads(summary)
    train.last_summary = summary
    if not quiet:
        mean = summary["mean_return"]
        print(
            f"{'interrupted' if summary['interrupted'] else 'done'} after "
            f"{summary['env_steps']} env steps, {summary['updates']} updates, "
            f"{summary['episodes']} episodes in {summary['elapsed_secs']:.1f} s "
            f"({summary['steps_per_sec']:.0f} steps/s); mean return (last 100 episodes): "
            f"{'n/a' if mean is None else f'{mean:.1f}'}",
            file=sys.stderr,
        )
    if interrupt is not None:
        raise interrupt  # KeyboardInterrupt: the run stopped at its next step and checkpointed
    return pathlib.Path(run_dir)


train.last_summary = None


def evaluate(run, episodes=10, seed=0, stochastic=False):
    """Plays ``episodes`` episodes of a checkpoint's policy (a run directory or a
    ``checkpoint.safetensors``), greedy unless ``stochastic``, as ``rlcpc eval``.

    Returns ``{"mean", "std", "min", "max", "episodes", "returns"}``. It runs to its end
    (Ctrl-C is seen after it returns): keep ``episodes`` to what you mean to wait for.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    returns = list(_native.evaluate(os.fspath(run), episodes, seed, stochastic))
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    return {
        "mean": mean,
        "std": std,
        "min": min(returns),
        "max": max(returns),
        "episodes": episodes,
        "returns": returns,
    }


def read_metrics(run):
    """The rows of a run's ``metrics.jsonl`` as dicts (one per log interval)."""
    path = pathlib.Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
