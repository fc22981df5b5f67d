"""One Gymnasium environment served to rlcpc over stdin/stdout (envs/src/gymnasium/mod.rs).
Kept to the standard library, numpy and gymnasium.

Started as `python -u -c <this file> SPEC`, where SPEC is JSON: {"id": ..., "kwargs": {...},
"max_episode_steps": n or null}. The first line written is JSON: the spaces, or the error.
Then binary requests on stdin, little-endian, one reply each on stdout:

  b"R" u8 has_seed u64 seed     reset        -> status, obs
  b"S" u32 action               step         -> status, f32 reward, u8 terminated, u8 truncated, obs
  b"Q"                          quit

status is u8 0 (ok) or 1 followed by u32 length and a UTF-8 message (the exception and
the last lines of its traceback); obs is the observation as float32, row-major, checked
against the observation space first.
"""

import json
import os
import signal
import struct
import sys
import traceback

CHANNEL = None  # the replies' stream (main sets it)


def hello(obj):
    CHANNEL.write((json.dumps(obj) + "\n").encode())
    CHANNEL.flush()


def fail_line(message):
    hello({"ok": False, "error": message})
    sys.exit(0)


def describe(space, np):
    """The space as rlcpc reads it, or a reason it cannot."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"discrete": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(space.low, space.shape).astype(np.float64).ravel()
        high = np.broadcast_to(space.high, space.shape).astype(np.float64).ravel()
        # JSON holds no infinities: unbounded sides become float32's largest value.
        big = float(np.finfo(np.float32).max)
        clip = lambda x: max(min(float(x), big), -big)
        # One number for bounds that are the same everywhere (an image's 0..255): the
        # line stays short however large the Box.
        bound = lambda a: clip(a[0]) if a.size and (a == a[0]).all() else [clip(x) for x in a]
        return {
            "box": [int(d) for d in space.shape],
            "low": bound(low),
            "high": bound(high),
            "dtype": str(space.dtype),
        }
    return {"unsupported": repr(space)}


def error_text(e):
    """The exception, then where it was raised."""
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        f = frames[-1]
        text += f" (raised at {f.filename}:{f.lineno}, in {f.name})"
    return text


def main():
    global CHANNEL
    # The replies get a private copy of fd 1; fd 1 itself (and sys.stdout) then points at
    # stderr, so that whatever an environment prints cannot corrupt the stream.
    CHANNEL = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Ctrl-C and a job-wide SIGTERM or SIGHUP (Slurm, systemd, docker stop) are rlcpc's
    # to handle: it finishes its step, checkpoints and then ends this process. Ignored
    # here, so that the environment still answers meanwhile.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    # rlcpc died without ending us (the kernel's parent-death signal, SIGUSR2): end this
    # process group, the environment's own helper processes with it.
    signal.signal(signal.SIGUSR2, lambda *_: os.killpg(0, signal.SIGKILL))
    spec = json.loads(sys.argv[1])
    try:
        import numpy as np
        import gymnasium
    except ImportError as e:
        fail_line(
            f"{e}; install Gymnasium into the Python rlcpc runs ({sys.executable}): "
            f"{sys.executable} -m pip install gymnasium; or name a Python that has it "
            f"(env.python in a config, --python for `envs score`, or activate its virtual environment)"
        )
    ale = spec["id"].split(":")[-1].startswith("ALE/")
    if ale:
        try:
            import ale_py

            gymnasium.register_envs(ale_py)
        except ImportError as e:
            fail_line(f"{e}; Atari environments need ale-py: {sys.executable} -m pip install ale-py")
    kwargs = dict(spec.get("kwargs") or {})
    wrappers = spec.get("wrappers") or []
    limit = int(spec.get("max_episode_steps") or 0)
    if limit and "atari" not in wrappers:
        kwargs["max_episode_steps"] = limit
    if "atari" in wrappers and ale:
        # AtariPreprocessing skips frames itself and refuses an env that already does.
        kwargs.setdefault("frameskip", 1)
    try:
        env = gymnasium.make(spec["id"], **kwargs)
    except Exception as e:  # noqa: BLE001 - everything is reported to rlcpc
        fail_line(error_text(e))
    try:
        for w in wrappers:
            if w == "atari":
                # The standard Atari preprocessing (Mnih et al. 2015; Machado et al. 2018):
                # up to 30 no-op starts, frame skip 4 with max-pooling of the last two
                # frames, 84x84 grayscale, four stacked frames.
                env = gymnasium.wrappers.AtariPreprocessing(env, frame_skip=4)
                env = gymnasium.wrappers.FrameStackObservation(env, 4)
                # Channels last, [84, 84, 4], as rlcpc's conv encoder reads images.
                stacked = env.observation_space
                env = gymnasium.wrappers.TransformObservation(
                    env,
                    lambda o: np.moveaxis(np.asarray(o), 0, -1),
                    gymnasium.spaces.Box(
                        np.moveaxis(stacked.low, 0, -1),
                        np.moveaxis(stacked.high, 0, -1),
                        dtype=stacked.dtype,
                    ),
                )
            elif w == "minigrid":
                # MiniGrid's 7x7x3 symbolic view alone (its Dict holds a text mission).
                from minigrid.wrappers import ImgObsWrapper

                env = ImgObsWrapper(env)
            elif w == "flatten":
                env = gymnasium.wrappers.FlattenObservation(env)
            else:
                fail_line(f"unknown wrapper '{w}' (env.wrappers); known: atari, minigrid, flatten")
        if limit and "atari" in wrappers:
            # In agent steps, above the frame skip (gymnasium.make's would count frames).
            env = gymnasium.wrappers.TimeLimit(env, limit)
    except Exception as e:  # noqa: BLE001
        fail_line(error_text(e))
    # Discrete and MultiDiscrete observations arrive one-hot (concatenated), as rlcpc's
    # own POPGym environments give them.
    from gymnasium import spaces

    sizes = None
    if isinstance(env.observation_space, spaces.Discrete):
        sizes = [int(env.observation_space.n)]
        offsets = [int(env.observation_space.start)]
    elif isinstance(env.observation_space, spaces.MultiDiscrete) and env.observation_space.nvec.ndim == 1:
        sizes = [int(n) for n in env.observation_space.nvec]
        offsets = [int(x) for x in np.broadcast_to(env.observation_space.start, len(sizes))]
    if sizes is not None:
        total = sum(sizes)
        obs_space = {"box": [total], "low": [0.0] * total, "high": [1.0] * total, "dtype": "float32"}
    else:
        obs_space = describe(env.observation_space, np)
    act_space = describe(env.action_space, np)
    hello({"ok": True, "observation_space": obs_space, "action_space": act_space})

    inp = sys.stdin.buffer
    out = CHANNEL
    shape = tuple(env.observation_space.shape or ())
    start = int(getattr(env.action_space, "start", 0))

    def read(n):
        b = inp.read(n)
        if len(b) != n:
            sys.exit(0)  # rlcpc went away
        return b

    def obs_bytes(obs):
        a = np.asarray(obs)
        if sizes is not None:
            if not env.observation_space.contains(obs):
                raise ValueError(f"observation {obs!r} does not match the observation space {env.observation_space}")
            hot = np.zeros(sum(sizes), dtype=np.float32)
            base = 0
            for v, n, o in zip(np.atleast_1d(a), sizes, offsets):
                hot[base + int(v) - o] = 1.0
                base += n
            return hot.tobytes()
        if a.shape == shape and a.dtype != env.observation_space.dtype:
            # Gymnasium itself only warns about e.g. float64 in a float32 Box.
            a = a.astype(env.observation_space.dtype)
        if a.shape != shape or not env.observation_space.contains(a):
            raise ValueError(
                f"observation {a.dtype}{list(a.shape)} does not match the observation space "
                f"{env.observation_space}"
                + ("" if a.shape != shape else f" (values {a.min()}..{a.max()})")
            )
        return np.ascontiguousarray(a, dtype=np.float32).tobytes()

    def error(e):
        msg = error_text(e).encode("utf-8", "replace")
        out.write(b"\x01" + struct.pack("<I", len(msg)) + msg)
        out.flush()

    while True:
        op = read(1)
        if op == b"R":
            has_seed, seed = struct.unpack("<BQ", read(9))
            try:
                obs, _ = env.reset(seed=int(seed) if has_seed else None)
                payload = obs_bytes(obs)
            except Exception as e:  # noqa: BLE001
                error(e)
                continue
            out.write(b"\x00" + payload)
            out.flush()
        elif op == b"S":
            (action,) = struct.unpack("<I", read(4))
            try:
                obs, reward, terminated, truncated, _ = env.step(action + start)
                payload = obs_bytes(obs)
                head = struct.pack("<fBB", float(reward), bool(terminated), bool(truncated))
            except Exception as e:  # noqa: BLE001
                error(e)
                continue
            out.write(b"\x00" + head + payload)
            out.flush()
        elif op == b"Q":
            env.close()
            return
        else:
            sys.exit(f"rlcpc gymnasium bridge: unknown request {op!r}")


if __name__ == "__main__":
    main()
