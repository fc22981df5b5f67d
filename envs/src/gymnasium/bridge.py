"""Gymnasium environments served to rlcpc over stdin/stdout (envs/src/gymnasium/mod.rs).
Kept to the standard library, numpy and gymnasium.

Started as `python -u -c <this file> SPEC`, where SPEC is JSON: {"id": ..., "kwargs": {...},
"max_episode_steps": n or null, "wrappers": [...]}, and for a vector of environments also
"num_envs": n, "vector": "sync" or "async", "shm": the path of the observation buffer.
The first line written is JSON: the spaces (of one environment), or the error. Then binary
requests on stdin, little-endian, one reply each on stdout.

One environment (no "num_envs"):

  b"R" u8 has_seed u64 seed     reset        -> status, obs
  b"S" u32 action               step         -> status, f32 reward, u8 terminated, u8 truncated, obs
  b"Q"                          quit

A vector of n environments stepped as one gymnasium.vector env (same-step auto-reset):

  b"R" n * (u8 has_seed, u64 seed)   reset   -> status
  b"S" n * u32 action                step    -> status, n * (f32 reward, u8 terminated, u8 truncated)
  b"Q"                               quit

Its observations never cross the pipe: the buffer at "shm" holds float32 [2, n, dim], the
current observations (after the auto-reset) in [0] and, for the environments whose episode
ended in the step, the episode's last observation in [1]; then an int32, the index of the
environment being stepped or reset now (-1 between them; kept in the sync vector only), so
that rlcpc can name the one that hangs or kills the process, and 4 bytes of padding.

status is u8 0 (ok); 1 followed by u32 length and a UTF-8 message (the exception and the
last lines of its traceback); or 2, u32 environment index, then as 1 (a vector's error in
a known environment). Observations are float32, row-major, checked against the observation
space first: shape, dtype and bounds (Discrete and MultiDiscrete arrive one-hot).
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

        def clip(x):
            return max(min(float(x), big), -big)

        def bound(a):
            # One number for bounds that are the same everywhere (an image's 0..255):
            # the line stays short however large the Box.
            return clip(a[0]) if a.size and (a == a[0]).all() else [clip(x) for x in a]

        return {
            "box": [int(d) for d in space.shape],
            "low": bound(low),
            "high": bound(high),
            "dtype": str(space.dtype),
        }
    return {"unsupported": repr(space)}


def error_text(e):
    """The exception, then where it was raised."""
    if isinstance(e, SubEnvError):
        return e.text
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        f = frames[-1]
        text += f" (raised at {f.filename}:{f.lineno}, in {f.name})"
    return text


class SubEnvError(Exception):
    """An error of sub-environment `index` of a vector; args are (index, text), so that it
    survives the pickling of AsyncVectorEnv's error queue."""

    @property
    def index(self):
        return self.args[0]

    @property
    def text(self):
        return self.args[1]


def sub_env_error(e):
    """The SubEnvError inside `e` (AsyncVectorEnv re-raises it as SubEnvError(SubEnvError)),
    or None."""
    while isinstance(e, SubEnvError) and isinstance(e.args[0], BaseException):
        e = e.args[0]
    return e if isinstance(e, SubEnvError) else None


def make_env(spec, np, gymnasium):
    """One environment of `spec`, wrapped as its "wrappers" say; raises as Gymnasium does."""
    ale = spec["id"].split(":")[-1].startswith("ALE/")
    kwargs = dict(spec.get("kwargs") or {})
    wrappers = spec.get("wrappers") or []
    limit = int(spec.get("max_episode_steps") or 0)
    if limit and "atari" not in wrappers:
        kwargs["max_episode_steps"] = limit
    if "atari" in wrappers and ale:
        # AtariPreprocessing skips frames itself and refuses an env that already does.
        kwargs.setdefault("frameskip", 1)
    env = gymnasium.make(spec["id"], **kwargs)
    for w in wrappers:
        if w == "atari":
            # The standard Atari preprocessing (Mnih et al. 2015; Machado et al. 2018):
            # up to 30 no-op starts, frame skip 4 with max-pooling of the last two
            # frames, 84x84 grayscale, four stacked frames.
            env = gymnasium.wrappers.AtariPreprocessing(env, frame_skip=4)
            # An episode's first stacks are padded with zero frames, as ale-py's vector
            # env pads them (the "sync" and "async" bridges use it for ALE/...-v5).
            env = gymnasium.wrappers.FrameStackObservation(env, 4, padding_type="zero")
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
        elif w == "minigrid-onehot":
            # The same view with each cell's object, colour and state as one-hot codes
            # (7x7x20 of 0/1): in the raw view, objects that differ only in their type
            # (MemoryS7's green key and green ball) differ in a single number.
            from minigrid.wrappers import ImgObsWrapper, OneHotPartialObsWrapper

            env = ImgObsWrapper(OneHotPartialObsWrapper(env))
        elif w == "flatten":
            env = gymnasium.wrappers.FlattenObservation(env)
        else:
            known = "atari, minigrid, minigrid-onehot, flatten"
            raise ValueError(f"unknown wrapper '{w}' (env.wrappers); known: {known}")
    if limit and "atari" in wrappers:
        # In agent steps, above the frame skip (gymnasium.make's would count frames).
        env = gymnasium.wrappers.TimeLimit(env, limit)
    return env


class Codec:
    """Observations of `space` as rlcpc reads them: float32 rows, checked first."""

    def __init__(self, space, np):
        from gymnasium import spaces

        self.np = np
        self.space = space
        self.dtype = space.dtype
        self.sizes = None
        if isinstance(space, spaces.Discrete):
            self.sizes = [int(space.n)]
            self.offsets = [int(space.start)]
        elif isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
            self.sizes = [int(n) for n in space.nvec]
            self.offsets = [int(x) for x in np.broadcast_to(space.start, len(self.sizes))]
        if self.sizes is not None:
            total = sum(self.sizes)
            self.dim = total
            self.described = {"box": [total], "low": [0.0] * total, "high": [1.0] * total, "dtype": "float32"}
            return
        self.described = describe(space, np)
        self.shape = tuple(space.shape or ())
        self.dim = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        if isinstance(space, spaces.Box):
            self.low = np.broadcast_to(space.low, self.shape)
            self.high = np.broadcast_to(space.high, self.shape)
            # The bounds of an image (0..255 of uint8) hold every value of the dtype:
            # nothing to compare.
            self.full = bool(
                np.issubdtype(space.dtype, np.integer)
                and (self.low == np.iinfo(space.dtype).min).all()
                and (self.high == np.iinfo(space.dtype).max).all()
            )

    def check_one(self, obs):
        """Raises ValueError where one environment's `obs` cannot stand in its space's batch:
        the wrong shape, or a value outside a Discrete space."""
        np = self.np
        if self.sizes is not None:
            if not self.space.contains(obs):
                raise ValueError(f"observation {obs!r} does not match the observation space {self.space}")
            return
        shape = np.shape(obs)
        if shape != self.shape:
            a = np.asarray(obs)
            raise ValueError(
                f"observation {a.dtype}{list(a.shape)} does not match the observation space {self.space}"
            )

    def write(self, batch, out):
        """Writes the observations `batch` ([n, *shape]) into `out` (float32 [n, dim]);
        raises ValueError, or SubEnvError naming the row, for one outside the space."""
        np = self.np
        a = np.asarray(batch)
        n = out.shape[0]
        if self.sizes is not None:
            v = a.reshape(n, len(self.sizes)).astype(np.int64) - np.asarray(self.offsets)
            bad = ((v < 0) | (v >= np.asarray(self.sizes))).any(axis=1)
            if bad.any():
                i = int(bad.argmax())
                raise SubEnvError(
                    i, f"observation {a[i]!r} does not match the observation space {self.space}"
                )
            out[:] = 0.0
            base = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
            out[np.arange(n)[:, None], base + v] = 1.0
            return
        if a.shape[1:] != self.shape:
            raise ValueError(
                f"observation {a.dtype}{list(a.shape[1:])} does not match the observation space {self.space}"
            )
        if a.dtype != self.space.dtype:
            # Gymnasium itself only warns about e.g. float64 in a float32 Box.
            a = a.astype(self.space.dtype)
        if not self.full:
            # Box.contains for every row at once (NaN fails it).
            inside = (a >= self.low) & (a <= self.high)
            rows = inside.reshape(n, -1).all(axis=1)
            if not rows.all():
                i = int((~rows).argmax())
                raise SubEnvError(
                    i,
                    f"observation {a.dtype}{list(a.shape[1:])} does not match the observation space "
                    f"{self.space} (values {a[i].min()}..{a[i].max()})",
                )
        np.copyto(out, a.reshape(n, self.dim), casting="unsafe")


def reply_error(out, e, vector):
    """Status 1 and the message; a vector's error in a known environment is status 2 with
    its index."""
    sub = sub_env_error(e)
    text = error_text(sub if sub is not None else e)
    msg = text.encode("utf-8", "replace")
    if vector and sub is not None and isinstance(sub.index, int):
        out.write(b"\x02" + struct.pack("<II", sub.index, len(msg)) + msg)
    else:
        out.write(b"\x01" + struct.pack("<I", len(msg)) + msg)
    out.flush()


def main():
    global CHANNEL
    # The replies get a private copy of fd 1; fd 1 itself (and sys.stdout) then points at
    # stderr, so that whatever an environment prints cannot corrupt the stream.
    CHANNEL = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Ctrl-C and a job-wide SIGTERM or SIGHUP (Slurm, systemd, docker stop) are rlcpc's
    # to handle: it finishes its step, checkpoints and then ends this process. Ignored
    # here (and so in AsyncVectorEnv's workers), so that the environment still answers.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    # rlcpc died without ending us (the kernel's parent-death signal, SIGUSR2): end this
    # process group, the environment's own helper processes with it.
    signal.signal(signal.SIGUSR2, lambda *_: os.killpg(0, signal.SIGKILL))
    spec = json.loads(sys.argv[1])
    try:
        import gymnasium
        import numpy as np
    except ImportError as e:
        fail_line(
            f"{e}; install Gymnasium into the Python rlcpc runs ({sys.executable}): "
            f"{sys.executable} -m pip install gymnasium; or name a Python that has it "
            f"(env.python in a config, --python for `envs score`, or activate its virtual environment)"
        )
    if spec["id"].split(":")[-1].startswith("ALE/"):
        try:
            import ale_py

            gymnasium.register_envs(ale_py)
        except ImportError as e:
            fail_line(f"{e}; Atari environments need ale-py: {sys.executable} -m pip install ale-py")
    if spec.get("num_envs"):
        serve_vector(spec, np, gymnasium)
    else:
        serve_one(spec, np, gymnasium)


def read(n):
    b = sys.stdin.buffer.read(n)
    if len(b) != n:
        sys.exit(0)  # rlcpc went away
    return b


def serve_one(spec, np, gymnasium):
    """One environment, its observations on the pipe."""
    try:
        env = make_env(spec, np, gymnasium)
        codec = Codec(env.observation_space, np)
    except Exception as e:  # noqa: BLE001 - everything is reported to rlcpc
        fail_line(error_text(e))
    act_space = describe(env.action_space, np)
    hello({"ok": True, "observation_space": codec.described, "action_space": act_space, "backend": "one"})
    out = CHANNEL
    start = int(getattr(env.action_space, "start", 0))
    row = np.zeros((1, codec.dim), dtype=np.float32)

    def obs_bytes(obs):
        codec.check_one(obs)
        codec.write(np.asarray(obs)[None], row)
        return row.tobytes()

    while True:
        op = read(1)
        if op == b"R":
            has_seed, seed = struct.unpack("<BQ", read(9))
            try:
                obs, _ = env.reset(seed=int(seed) if has_seed else None)
                payload = obs_bytes(obs)
            except Exception as e:  # noqa: BLE001
                reply_error(out, e, False)
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
                reply_error(out, e, False)
                continue
            out.write(b"\x00" + head + payload)
            out.flush()
        elif op == b"Q":
            env.close()
            return
        else:
            sys.exit(f"rlcpc gymnasium bridge: unknown request {op!r}")


def ale_vector(spec, n, np):
    """ale-py's own vector environment (C++ threads, no Python per step) for an `ALE/NAME-v5`
    id with the `atari` wrapper and only the options it takes, set up as that wrapper is
    (no-op starts, frame skip 4 with max-pooling, 84x84 grayscale, 4 frames; no fire
    reset, no reward clipping, no episodic life); None where it does not apply."""
    import re

    name = spec["id"].split(":")[-1]
    m = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", name)
    kwargs = dict(spec.get("kwargs") or {})
    if not m or spec.get("wrappers") != ["atari"]:
        return None
    if set(kwargs) - {"repeat_action_probability", "full_action_space"}:
        return None
    try:
        from ale_py import roms
        from ale_py.vector_env import AtariVectorEnv
    except ImportError:
        return None
    game = re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).lower()
    if roms.get_rom_path(game) is None:
        return None
    limit = int(spec.get("max_episode_steps") or 0)
    return AtariVectorEnv(
        game,
        n,
        autoreset_mode="SameStep",
        repeat_action_probability=float(kwargs.get("repeat_action_probability", 0.25)),
        full_action_space=bool(kwargs.get("full_action_space", False)),
        # ALE's v5 ids end episodes at 108,000 frames, whatever the time limit above.
        max_num_frames_per_episode=min(4 * limit, 108000) if limit else 108000,
        frameskip=4,
        noop_max=30,
        stack_num=4,
        img_height=84,
        img_width=84,
        grayscale=True,
        maxpool=True,
        use_fire_reset=False,
        reward_clipping=False,
        episodic_life=False,
    )


def serve_vector(spec, np, gymnasium):
    """`num_envs` environments as one gymnasium.vector env, observations in shared memory."""
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    n = int(spec["num_envs"])
    mode = spec.get("vector", "sync")

    class Indexed(gymnasium.Wrapper):
        """Names sub-environment `index` in what it raises, and checks each observation's
        shape before the vector stacks it (where a wrong one could not be told apart)."""

        def __init__(self, env, index, codec):
            super().__init__(env)
            self.index = index
            self.codec = codec

        def _guard(self, call, *args, **kwargs):
            if busy is not None:
                busy[0] = self.index
            try:
                out = call(*args, **kwargs)
                self.codec.check_one(out[0])
            except SubEnvError:
                raise
            except Exception as e:  # noqa: BLE001
                raise SubEnvError(self.index, error_text(e)) from None
            finally:
                if busy is not None:
                    busy[0] = -1
            # A copy in the space's dtype: the vector stacks only same-kind casts (the
            # single bridge casts as Gymnasium does, e.g. float64 into a float32 Box),
            # and it keeps a reference to the final observation while it resets, which
            # an environment that refills one buffer would overwrite.
            obs = np.array(out[0], dtype=self.codec.dtype, copy=True)
            # Infos are not read: dropped, so that the vector's merging of them (which
            # fails on infos that differ between environments) never runs.
            return (obs,) + tuple(out[1:-1]) + ({},)

        def step(self, action):
            return self._guard(self.env.step, action)

        def reset(self, **kwargs):
            return self._guard(self.env.reset, **kwargs)

    transpose = False
    busy = None  # the shared int32 "stepping now" (set once the buffer is made)
    try:
        venv = ale_vector(spec, n, np)
        if venv is not None:
            backend = "ale_py.AtariVectorEnv"
            transpose = True  # [n, 4, 84, 84] -> [n, 84, 84, 4]
            s = venv.single_observation_space
            single = gymnasium.spaces.Box(
                np.moveaxis(np.broadcast_to(s.low, s.shape), 0, -1),
                np.moveaxis(np.broadcast_to(s.high, s.shape), 0, -1),
                dtype=s.dtype,
            )
            act = venv.single_action_space
        else:
            # The first environment tells the spaces (and the errors of making one).
            probe = make_env(spec, np, gymnasium)
            single, act = probe.observation_space, probe.action_space
            codec = Codec(single, np)
            makers = [lambda i=i: Indexed(make_env(spec, np, gymnasium), i, codec) for i in range(n)]
            if mode == "async":
                import multiprocessing

                ctx = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
                probe.close()
                # A forked worker would share numpy's global generator with the others:
                # each draws its own, as a process of its own (env.vector = "none") does.
                reseeded = [lambda m=m: (np.random.seed(), m())[1] for m in makers]
                venv = AsyncVectorEnv(reseeded, context=ctx, autoreset_mode="SameStep")
                backend = "gymnasium.vector.AsyncVectorEnv"
            else:
                first = Indexed(probe, 0, codec)
                venv = SyncVectorEnv([lambda: first] + makers[1:], copy=False, autoreset_mode="SameStep")
                backend = "gymnasium.vector.SyncVectorEnv"
        codec = Codec(single, np)
        # The buffer is made here, where its size is known; rlcpc maps it after the hello
        # and removes its name.
        fd = os.open(spec["shm"], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = 2 * n * codec.dim * 4 + 8
            os.ftruncate(fd, size)
            if hasattr(os, "posix_fallocate"):
                # Reserved now: a /dev/shm too small (a container's 64 MiB) fails here,
                # not with SIGBUS at the first write past its end.
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as e:
                    raise OSError(
                        f"cannot reserve {size} bytes of shared memory for the observations at "
                        f"{spec['shm']}: {e.strerror} (a container's /dev/shm may be too small: "
                        f'docker run --shm-size; or env.vector = "none")'
                    ) from None
        finally:
            os.close(fd)
        shm = np.memmap(spec["shm"], dtype=np.float32, mode="r+", shape=(2, n, codec.dim))
        stepping = np.memmap(spec["shm"], dtype="<i4", mode="r+", offset=2 * n * codec.dim * 4, shape=(1,))
        stepping[0] = -1
        if backend.endswith("SyncVectorEnv"):
            busy = stepping
    except Exception as e:  # noqa: BLE001
        sub = sub_env_error(e)
        fail_line(error_text(sub if sub is not None else e))
    hello(
        {
            "ok": True,
            "observation_space": codec.described,
            "action_space": describe(act, np),
            "backend": backend,
        }
    )
    out = CHANNEL
    start = int(getattr(act, "start", 0))
    flags = np.zeros(n, dtype=[("reward", "<f4"), ("terminated", "u1"), ("truncated", "u1")])

    def batch(obs):
        return np.moveaxis(obs, 1, -1) if transpose else obs

    while True:
        op = read(1)
        if op == b"R":
            raw = read(9 * n)
            seeds = []
            for i in range(n):
                has_seed, seed = struct.unpack_from("<BQ", raw, 9 * i)
                seeds.append(int(seed) if has_seed else None)
            try:
                if transpose:
                    # ALE's seeds are C ints: one drawn from the seed, as AtariEnv.seed does.
                    seeds = np.array(
                        [
                            -1
                            if s is None
                            else int(np.random.SeedSequence(s).generate_state(1)[0] & 0x7FFFFFFF)
                            for s in seeds
                        ]
                    )
                obs, _ = venv.reset(seed=seeds)
                codec.write(batch(obs), shm[0])
            except Exception as e:  # noqa: BLE001
                reply_error(out, e, True)
                continue
            out.write(b"\x00")
            out.flush()
        elif op == b"S":
            actions = np.frombuffer(read(4 * n), dtype="<u4").astype(np.int64) + start
            try:
                obs, reward, terminated, truncated, info = venv.step(actions)
                codec.write(batch(obs), shm[0])
                flags["reward"] = reward
                flags["terminated"] = terminated
                flags["truncated"] = truncated
                ended = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated))
                if len(ended):
                    final = info["final_obs"]
                    rows = np.stack([np.asarray(final[i]) for i in ended])
                    if transpose:
                        rows = np.moveaxis(rows, 1, -1)
                    dst = np.empty((len(ended), codec.dim), dtype=np.float32)
                    try:
                        codec.write(rows, dst)
                    except SubEnvError as e:
                        raise SubEnvError(int(ended[e.index]), e.text) from None
                    shm[1][ended] = dst
            except Exception as e:  # noqa: BLE001
                reply_error(out, e, True)
                continue
            out.write(b"\x00" + flags.tobytes())
            out.flush()
        elif op == b"Q":
            venv.close()
            return
        else:
            sys.exit(f"rlcpc gymnasium bridge: unknown request {op!r}")


if __name__ == "__main__":
    main()
