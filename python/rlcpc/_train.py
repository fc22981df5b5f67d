"""Training and evaluation: ``rlcpc train`` and ``rlcpc eval`` as functions."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import operator
import os
import pathlib
import sys
import tempfile
from collections.abc import Mapping
from typing import Any, SupportsIndex, Union

from . import _native

#: A path as the functions take it: a ``str`` or any ``os.PathLike`` (a
#: ``pathlib.Path``, a :class:`TrainResult`).
PathArg = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: the run directory and the run's counters.

    It is a path-like object (``os.fspath(result)`` and ``str(result)`` are the run
    directory), so it can be passed wherever a run directory is taken: :func:`evaluate`, :func:`read_metrics`,
    :func:`rlcpc.load_encoder`, ``train(out=result, resume=True)``.
    """

    #: The run directory: ``config.toml``, ``metrics.jsonl``, TensorBoard events,
    #: ``checkpoint.safetensors``.
    run_dir: pathlib.Path
    #: Environment steps taken in all (a resumed run counts its earlier steps too).
    env_steps: int
    #: Learner updates in all.
    updates: int
    #: Episodes finished in all.
    episodes: int
    #: Seconds of training in all.
    elapsed_secs: float
    #: Environment steps per second over this call.
    steps_per_sec: float
    #: Mean return of the last 100 episodes (``None`` before the first ends).
    mean_return: float | None
    #: Env steps when the mean return first reached ``run.target_return``, if it did.
    solved_at_env_steps: int | None
    #: Whether Ctrl-C stopped the run before ``run.total_steps`` (its checkpoint written).
    interrupted: bool

    def __fspath__(self) -> str:
        return os.fspath(self.run_dir)

    def __str__(self) -> str:
        """The run directory, as ``str(path)`` gives it (``repr`` shows every field)."""
        return os.fspath(self.run_dir)

    def metrics(self) -> list[dict[str, Any]]:
        """The run's ``metrics.jsonl`` (:func:`read_metrics`)."""
        return read_metrics(self.run_dir)


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`train`: the run finished its current step and wrote its
    checkpoint first. ``result`` is the stopped run's :class:`TrainResult`; a
    ``KeyboardInterrupt``, so code that catches that sees it unchanged."""

    def __init__(self, result: TrainResult) -> None:
        super().__init__(
            f"training stopped after {result.env_steps} env steps; checkpoint in {result.run_dir}"
        )
        self.result = result


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` returns: the episodes' returns and their statistics."""

    #: Mean return over the episodes.
    mean: float
    #: Standard deviation of the returns (population, over ``episodes``).
    std: float
    #: Lowest return.
    min: float
    #: Highest return.
    max: float
    #: Episodes played.
    episodes: int
    #: Each episode's return, in the order they ended.
    returns: list[float]


def presets() -> list[str]:
    """The names of the built-in presets (``rlcpc config list``)."""
    return list(_native.presets())


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
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


def _toml(value: Any, key: str) -> str:
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
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return float.__repr__(x)
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


def _key(k: object, where: str) -> str:
    """A config key: a non-empty name without dots, '=' or spaces."""
    if not isinstance(k, str) or not k or any(c in k for c in ".= \t\n"):
        raise TypeError(f"override '{where}': {k!r} is not a config key (a plain name)")
    return k


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    """``{"env": {"id": "x"}}`` → ``['env.id="x"']``; tables inside lists stay inline."""
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"override '{prefix}': an empty dict sets nothing")
        for k, v in value.items():
            _flatten(f"{prefix}.{_key(k, prefix)}", v, out)
    else:
        out.append(f"{prefix}={_toml(value, prefix)}")


def _no_none(value: Any, where: str) -> None:
    """Refuses None anywhere in a config dict (TOML has no null), naming the key."""
    if value is None:
        raise TypeError(f"config '{where}': None has no TOML form; leave the key out")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_none(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _no_none(v, f"{where}[{i}]")


def _overrides(overrides: Mapping[str, Any]) -> list[str]:
    """Keyword overrides as ``--set`` strings.

    A section given as a dict (``env={"id": ...}``) sets each key in it; a dotted key
    (``**{"run.total_steps": 10_000}``) sets that key.
    """
    out: list[str] = []
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


def train(
    config: None | PathArg | Mapping[str, Any] = None,
    *,
    out: PathArg | None = None,
    seed: SupportsIndex | None = None,
    aux: None | str | Mapping[str, Any] = None,
    resume: bool = False,
    quiet: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Trains an agent, as ``rlcpc train``; returns a :class:`TrainResult` (the run
    directory, path-like, and the run's counters).

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

    Ctrl-C stops the run at its next step and writes its checkpoint, then raises
    :class:`TrainInterrupted` (a ``KeyboardInterrupt``) whose ``result`` is the stopped
    run's (from the main thread, where Python handles signals; a second Ctrl-C exits at
    once). Training runs on the CPU. The run directory holds ``config.toml``,
    ``metrics.jsonl`` (:func:`read_metrics`), TensorBoard event files and
    ``checkpoint.safetensors``.
    """
    sets: list[str] = []
    if isinstance(aux, Mapping):  # the [aux] section, as any other section
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
    out_path = None if out is None else os.fspath(out)
    with tempfile.TemporaryDirectory(prefix="rlcpc-config-") as tmp:
        if isinstance(config, Mapping):
            _no_none(config, "")
            path = os.path.join(tmp, "python.toml")  # run directories: runs/python-...
            with open(path, "w", encoding="utf-8") as f:
                f.write(_native.toml_from_json(json.dumps(dict(config))))
            config_path: str | None = path
        else:
            config_path = None if config is None else os.fspath(config)
        run_dir, summary_json, interrupt = _native.train(config_path, sets, out_path, resume, quiet)
    s = json.loads(summary_json)
    result = TrainResult(
        run_dir=pathlib.Path(run_dir),
        env_steps=int(s["env_steps"]),
        updates=int(s["updates"]),
        episodes=int(s["episodes"]),
        elapsed_secs=float(s["elapsed_secs"]),
        steps_per_sec=float(s["steps_per_sec"]),
        mean_return=None if s["mean_return"] is None else float(s["mean_return"]),
        solved_at_env_steps=s["solved_at_env_steps"],
        interrupted=bool(s["interrupted"]),
    )
    if not quiet:
        mean = result.mean_return
        print(
            f"{'interrupted' if result.interrupted else 'done'} after "
            f"{result.env_steps} env steps, {result.updates} updates, "
            f"{result.episodes} episodes in {result.elapsed_secs:.1f} s "
            f"({result.steps_per_sec:.0f} steps/s); mean return (last 100 episodes): "
            f"{'n/a' if mean is None else f'{mean:.1f}'}",
            file=sys.stderr,
        )
    if interrupt is not None:
        # Ctrl-C: the run stopped at its next step and checkpointed.
        raise TrainInterrupted(result) from interrupt
    return result


def evaluate(run: PathArg, episodes: int = 10, seed: int = 0, stochastic: bool = False) -> EvalResult:
    """Plays ``episodes`` episodes of a checkpoint's policy (a run directory, a
    :class:`TrainResult` or a ``checkpoint.safetensors``), greedy unless ``stochastic``,
    as ``rlcpc eval``; returns an :class:`EvalResult`.

    It runs to its end (Ctrl-C is seen after it returns): keep ``episodes`` to what you
    mean to wait for.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    returns = list(_native.evaluate(os.fspath(run), episodes, seed, stochastic))
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    return EvalResult(
        mean=mean, std=std, min=min(returns), max=max(returns), episodes=episodes, returns=returns
    )


def read_metrics(run: PathArg) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` as dicts (one per log interval)."""
    path = pathlib.Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
