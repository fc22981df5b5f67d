"""The Python package, used as a Python user would: train on rlcpc's and on Gymnasium's
environments, evaluate, load every kind of encoder rlcpc writes, and check that
``to_torch`` gives rlcpc's outputs.

The ``to_torch`` tests need PyTorch and are skipped, with a note, where it is not
installed (CI installs no PyTorch: its CPU wheels are not on PyPI); run them with
``pip install torch`` in the same environment. Every other test needs only NumPy,
Gymnasium and this package.
"""

import dataclasses
import gzip
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
import wave

import numpy as np
import pytest

import rlcpc

HERE = pathlib.Path(__file__).resolve().parent

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="PyTorch is not installed (pip install torch to run the to_torch tests)"
)


@pytest.fixture(autouse=True, scope="session")
def test_envs_importable():
    """The Gymnasium environment processes import the tests' environments module."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([old] if old else []))
    yield
    if old is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = old


def cli(*args):
    """``python -m rlcpc ARGS`` (the command line inside the package); its output."""
    r = subprocess.run([sys.executable, "-m", "rlcpc", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"rlcpc {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def sets(**kv):
    return [a for k, v in kv.items() for a in ("--set", f"{k.replace('__', '.')}={v}")]


# --- data the trainers read, written here -------------------------------------------


def write_idx(folder, n=40, side=16):
    """``n`` grey squares in IDX files (train and test parts): the square's corner is
    the class."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 40, (n, side, side))).astype(np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 4
    for i, c in enumerate(labels):
        y, x = 2 + 4 * (c // 2), 2 + 4 * (c % 2)
        images[i, y : y + 6, x : x + 6] = 255
    for part in ("train", "t10k"):
        head = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, side, side))
        (folder / f"{part}-images-idx3-ubyte").write_bytes(head + images.tobytes())
        head = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big")
        with gzip.open(folder / f"{part}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(head + labels.tobytes())


def write_wavs(folder):
    """An FSDD-style corpus at 8 kHz: two voices, three vowels, 4 clips each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    t = np.arange(4000) / 8000
    for speaker, f0 in (("low", 110.0), ("high", 240.0)):
        for digit in range(3):
            formant = 500 + 700 * digit
            for i in range(4):
                x = sum(
                    math.exp(-(((f0 * h - formant) / 300) ** 2)) * np.sin(2 * np.pi * f0 * h * t)
                    for h in range(1, 8)
                )
                x = x / (np.abs(x).max() + 1e-9) * 0.5 + 0.02 * rng.standard_normal(t.size)
                with wave.open(str(folder / f"{digit}_{speaker}_{i}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(8000)
                    w.writeframes((np.clip(x, -1, 1) * 30000).astype("<i2").tobytes())


# --- one run of every trainer, shared by the tests ----------------------------------


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Run directories holding each kind of encoder, made by rlcpc itself."""
    d = tmp_path_factory.mktemp("runs")
    out = {}
    out["mlp"] = rlcpc.train("cartpole", out=d / "mlp", seed=1, quiet=True, run={"total_steps": 4000})
    out["conv"] = rlcpc.train(
        "cartpole",
        out=d / "conv",
        quiet=True,
        env={"id": "gymnasium:rlcpc_py_envs:RlcpcSide-v0", "num_envs": 4},
        model={"encoder": "conv", "conv_fc": 32},
        run={"total_steps": 640},
    )
    write_idx(d / "squares")
    write_wavs(d / "wavs")
    (d / "corpus.txt").write_text("The cat sat on the mat today. A dog ran in the park again. " * 30)
    cli(
        "pretrain",
        "image",
        "--quiet",
        "--data",
        str(d / "squares"),
        "--out",
        str(d / "patches"),
        *sets(
            model__features=8,
            model__layer_norm="true",
            train__batch=4,
            train__steps=2,
            cpc__horizon=2,
            cpc__skip=0,
        ),
    )
    out["patches"] = d / "patches"
    cli(
        "pretrain",
        "image",
        "--quiet",
        "--objective",
        "simclr",
        "--data",
        str(d / "squares"),
        "--out",
        str(d / "resnet"),
        *sets(
            model__widths="[4,8]",
            model__blocks="[1,1]",
            model__head_hidden="[16]",
            model__projection=8,
            train__batch=8,
            train__steps=3,
            knn__every=100,
        ),
    )
    out["resnet"] = d / "resnet"
    cli(
        "pretrain",
        "audio",
        "--quiet",
        "--data",
        str(d / "wavs"),
        "--out",
        str(d / "audio"),
        *sets(
            model__channels=16,
            model__context=16,
            model__channel_norm="true",
            data__window=3200,
            cpc__horizon=4,
            train__batch=4,
            train__steps=2,
        ),
    )
    out["audio"] = d / "audio"
    cli(
        "pretrain",
        "text",
        "--quiet",
        "--data",
        str(d / "corpus.txt"),
        "--out",
        str(d / "text"),
        *sets(
            model__embedding=8,
            model__features=8,
            model__context=8,
            train__batch=2,
            data__sequence=4,
            cpc__horizon=2,
            train__steps=2,
        ),
    )
    out["text"] = d / "text"
    return out


def inputs(enc, n=5, seed=0):
    """A batch the encoder reads, in its units."""
    rng = np.random.default_rng(seed)
    s = enc.spec
    if enc.kind == "mlp":
        return rng.normal(size=(n, s["in_dim"])).astype(np.float32)
    if enc.kind == "conv":
        return rng.integers(0, 256, (n, s["height"], s["width"], s["channels"])).astype(np.float32)
    if enc.kind in ("patches", "resnet"):
        return rng.random((n, s["height"], s["width"], s["channels"]), dtype=np.float32)
    if enc.kind == "audio":
        return (0.3 * rng.standard_normal((n, 1000))).astype(np.float32)
    return [list(rng.integers(0, s["vocab"], int(k))) for k in rng.integers(0, 13, n)]


# --- training and evaluation ----------------------------------------------------------


def test_train_returns_the_run_and_seeded_runs_repeat(tmp_path):
    kw = dict(seed=3, quiet=True, run={"total_steps": 6000, "log_every": 10})
    a = rlcpc.train("cartpole", out=tmp_path / "a", **kw)
    b = rlcpc.train(None, out=tmp_path / "b", **kw)  # None is the default preset
    assert isinstance(a, rlcpc.TrainResult) and a.run_dir == tmp_path / "a"
    assert os.fspath(a) == str(a) == str(tmp_path / "a")  # path-like: taken wherever a run is
    for f in ("config.toml", "metrics.jsonl", "checkpoint.safetensors"):
        assert (a.run_dir / f).is_file(), f
    ma, mb = rlcpc.read_metrics(a), rlcpc.read_metrics(b)
    assert a.metrics() == ma
    assert len(ma) >= 5 and ma[-1]["time/total_timesteps"] == 6000

    # Everything but the timings repeats.
    def strip(rows):
        return [
            {k: v for k, v in r.items() if not k.startswith("time/") or k.endswith("total_timesteps")}
            for r in rows
        ]

    assert strip(ma) == strip(mb), "two seeded sync runs differ"
    assert "train/entropy" in strip(ma)[0]
    assert a.env_steps == 6000 and not a.interrupted and a.updates > 0 and a.episodes > 0
    assert a.mean_return is not None and a.steps_per_sec > 0
    ev = rlcpc.evaluate(a, episodes=4, seed=1)
    assert isinstance(ev, rlcpc.EvalResult)
    assert ev.episodes == 4 and len(ev.returns) == 4
    assert ev.min <= ev.mean <= ev.max and ev.mean == pytest.approx(sum(ev.returns) / 4)
    assert ev == rlcpc.evaluate(a.run_dir / "checkpoint.safetensors", episodes=4, seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.env_steps = 0  # type: ignore[misc]


def test_a_gymnasium_environment_trains_and_its_conv_encoder_learns(runs, tmp_path):
    """The Side task (act on the lit half) from pixels through Gymnasium: a conv agent
    gets well above chance (5 of 10) in a short run."""
    run = rlcpc.train(
        "cartpole",
        out=tmp_path / "side",
        seed=1,
        quiet=True,
        env={"id": "gymnasium:rlcpc_py_envs:RlcpcSide-v0", "num_envs": 8},
        model={"encoder": "conv", "conv_fc": 64},
        optim={"lr": 1e-3},
        run={"total_steps": 12000, "log_every": 2000},
    )
    cfg = (run.run_dir / "config.toml").read_text()
    assert 'id = "gymnasium:rlcpc_py_envs:RlcpcSide-v0"' in cfg
    ev = rlcpc.evaluate(run, episodes=20, seed=5)
    assert ev.mean >= 8.0, ev
    enc = rlcpc.load_encoder(run)
    assert enc.kind == "conv" and enc.spec["height"] == 24 and enc.out_dim == 64


def test_a_config_dict_and_dotted_overrides(tmp_path):
    config = {
        "env": {"id": "CartPole-v1", "num_envs": 4},
        "run": {"total_steps": 800, "seed": 2},
        "model": {"mlp_hidden": [16]},
    }
    run = rlcpc.train(config, out=tmp_path / "d", quiet=True, **{"algo.unroll": 10})
    text = (run.run_dir / "config.toml").read_text()
    assert "num_envs = 4" in text and "unroll = 10" in text
    assert rlcpc.load_encoder(run).spec["hidden"] == [16]


def test_bad_overrides_and_configs_are_named(tmp_path):
    with pytest.raises(rlcpc.RlcpcError, match="(?s)total_stepz.*in `run`"):
        rlcpc.train("cartpole", out=tmp_path / "x", quiet=True, run={"total_stepz": 5})
    with pytest.raises(TypeError, match="total_steps"):
        rlcpc.train("cartpole", quiet=True, total_steps=5)
    with pytest.raises(TypeError, match="None has no TOML form"):
        rlcpc.train("cartpole", quiet=True, run={"total_steps": None})
    with pytest.raises(rlcpc.RlcpcError, match="nosuch"):
        rlcpc.train("nosuch-preset", quiet=True)
    with pytest.raises(rlcpc.RlcpcError, match="env.id"):
        rlcpc.train("cartpole", out=tmp_path / "y", quiet=True, env={"id": "gymnasium:NoSuchEnv-v9"})
    with pytest.raises(rlcpc.RlcpcError, match="no-such-run"):
        rlcpc.evaluate(tmp_path / "no-such-run")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(ValueError, match="empty dict"):
        rlcpc.train("cartpole", quiet=True, env={})
    with pytest.raises(TypeError, match="not a config key"):
        rlcpc.train("cartpole", quiet=True, env={"a.b": 1})
    with pytest.raises(ValueError, match="64-bit"):
        rlcpc.train("cartpole", quiet=True, seed=2**64)
    with pytest.raises(ValueError, match="leave `config` out"):
        rlcpc.train("cartpole", out=tmp_path / "z", resume=True)
    with pytest.raises(TypeError, match="run.seed"):
        rlcpc.train({"run": {"seed": None}}, quiet=True)


def test_override_values_are_written_as_toml_reads_them():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from rlcpc._train import _toml

    values = [
        'a "quoted" \\ back\nslash\ttab\x7f',
        "ünïcödé 🙂",
        np.float64(1e-3),
        np.float32(0.5),
        np.int64(7),
        np.bool_(True),
        -(2**63),
        1e300,
        [1, 2.5, "x", [True]],
        {"a": 1, "b": "c"},
    ]
    for v in values:
        got = tomllib.loads("v = " + _toml(v, "v"))["v"]
        want = v.item() if isinstance(v, np.generic) else v
        assert got == want, (v, _toml(v, "v"))
    assert tomllib.loads("v = " + _toml(float("inf"), "v"))["v"] == float("inf")


def test_numpy_values_reach_the_config(tmp_path):
    run = rlcpc.train(
        "cartpole",
        out=tmp_path / "np",
        seed=np.int64(4),
        quiet=True,
        optim={"lr": np.float64(1e-3)},
        run={"total_steps": np.int32(400)},
    )
    text = (run.run_dir / "config.toml").read_text()
    assert "seed = 4" in text and "lr = 0.001" in text and "total_steps = 400" in text


def test_ctrl_c_checkpoints_then_raises_keyboard_interrupt(tmp_path):
    out = tmp_path / "long"
    # The child handles SIGINT as Python does by default even where the runner started
    # it with SIGINT ignored (a shell's background job), which Python would inherit.
    script = (
        "import json, signal, rlcpc\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        f"    rlcpc.train('cartpole', out={str(out)!r}, quiet=True,\n"
        "                run={'total_steps': 10**10, 'target_return': 0, 'checkpoint_every': 10**9})\n"
        "except rlcpc.TrainInterrupted as e:\n"
        "    assert isinstance(e, KeyboardInterrupt)\n"
        "    print(json.dumps({'env_steps': e.result.env_steps, 'interrupted': e.result.interrupted}))\n"
        "    raise\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err
    summary = json.loads(stdout)
    assert summary["interrupted"], summary
    # The checkpoint was written at the interrupt (none was due before), with its counters.
    meta = rlcpc.load_encoder(out).metadata
    assert json.loads(meta["rlcpc.counters"])["env_steps"] == summary["env_steps"] > 0
    # The checkpoint is whole: it evaluates and the run resumes from it.
    assert len(rlcpc.evaluate(out, episodes=1).returns) == 1
    steps = int(rlcpc.read_metrics(out)[-1]["time/total_timesteps"])
    again = rlcpc.train(out=out, resume=True, quiet=True, run={"total_steps": steps + 2000})
    assert again.env_steps >= steps + 2000 and again.run_dir == out


def test_the_command_line_is_in_the_package():
    assert "rlcpc" in cli("--version")
    assert "CartPole-v1" in cli("envs")
    r = subprocess.run([sys.executable, "-m", "rlcpc", "train", "--nosuch"], capture_output=True, text=True)
    assert r.returncode != 0 and "--nosuch" in r.stderr


# --- encoders -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "conv", "patches", "resnet", "audio", "text"])
def test_every_encoder_loads_with_its_spec_weights_and_forward(runs, kind):
    enc = rlcpc.load_encoder(runs[kind])
    assert enc.kind == kind, enc
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in enc.weights.values())
    assert any(k.startswith("encoder.") for k in enc.weights)
    x = inputs(enc)
    y = enc(x)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    n = len(x)
    s = enc.spec
    if kind == "patches":
        grid = [(s[d] - s["patch"]) // s["stride"] + 1 for d in ("height", "width")]
        want = (n, *grid, enc.out_dim)
    elif kind == "audio":
        want = (n, math.ceil(1000 / math.prod(s["strides"])), enc.out_dim)
    else:
        want = (n, enc.out_dim)
    assert y.shape == want
    # Items are encoded independently: one alone gives its row of the batch.
    one = enc(x[1:2])
    np.testing.assert_allclose(one[0], y[1], rtol=1e-5, atol=1e-5)


def test_the_mlp_forward_is_the_layers_by_hand(runs):
    enc = rlcpc.load_encoder(runs["mlp"])
    w = enc.weights
    x = inputs(enc, n=7)
    h = x
    for i in range(len(enc.spec["hidden"])):
        h = np.tanh(h @ w[f"encoder.mlp.{i}.weight"].T + w[f"encoder.mlp.{i}.bias"])
    np.testing.assert_allclose(enc(x), h, rtol=1e-5, atol=1e-6)


def test_an_agent_checkpoint_and_its_export_agree(runs, tmp_path):
    out = tmp_path / "enc.safetensors"
    cli("export-encoder", "--checkpoint", str(runs["conv"]), "--out", str(out))
    a, b = rlcpc.load_encoder(runs["conv"]), rlcpc.load_encoder(out)
    assert a.spec == b.spec and a.weights.keys() == b.weights.keys()
    x = inputs(a)
    np.testing.assert_array_equal(a(x), b(x))


def test_text_encoders_take_texts_or_ids(runs):
    enc = rlcpc.load_encoder(runs["text"])
    ids = enc.tokenize(["The cat sat on the mat.", "A zyzzyva dog"])
    # Words of the corpus have their own ids (0 is padding, 1 unknown); the unknown word is 1.
    assert len(ids[0]) >= 6 and all(i >= 2 for i in ids[0]), ids
    assert 1 in ids[1] and ids[1][0] >= 2, ids
    np.testing.assert_array_equal(enc(["The cat sat on the mat.", "A zyzzyva dog"]), enc(ids))
    np.testing.assert_array_equal(enc("A zyzzyva dog"), enc([ids[1]]))  # one text, not its letters
    with pytest.raises(TypeError, match="not both"):
        enc(["A dog", [2, 3]])


def test_bad_inputs_are_refused_with_what_was_expected(runs, tmp_path):
    mlp = rlcpc.load_encoder(runs["mlp"])
    with pytest.raises(rlcpc.RlcpcError, match=r"\[N, 4\]"):
        mlp(np.zeros((3, 5), np.float32))
    with pytest.raises(rlcpc.RlcpcError, match="finite"):
        mlp(np.array([[0, 0, float("nan"), 0]], np.float32))
    conv = rlcpc.load_encoder(runs["conv"])
    with pytest.raises(rlcpc.RlcpcError, match=r"\[N, 24, 24, 3\]"):
        conv(np.zeros((2, 24, 24), np.float32))
    text = rlcpc.load_encoder(runs["text"])
    with pytest.raises(rlcpc.RlcpcError, match="past the vocabulary"):
        text([[0, text.spec["vocab"]]])
    with pytest.raises(rlcpc.RlcpcError, match="no-such.safetensors"):
        rlcpc.load_encoder(tmp_path / "no-such.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(rlcpc.RlcpcError, match="junk.safetensors"):
        rlcpc.load_encoder(junk)
    assert mlp(np.zeros((0, 4), np.float32)).shape == (0, 64)


# --- PyTorch --------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("kind", ["mlp", "conv", "patches", "resnet", "audio", "text"])
def test_to_torch_gives_rlcpcs_outputs(runs, kind):
    enc = rlcpc.load_encoder(runs[kind])
    net = rlcpc.to_torch(enc)
    assert isinstance(net, torch.nn.Module) and not net.training
    names = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    assert names == {k[len("encoder.") :] for k in enc.weights if k.startswith("encoder.")}
    for seed in range(3):
        x = inputs(enc, n=5, seed=seed)
        want = enc(x)
        with torch.no_grad():
            got = net(x if kind == "text" else torch.from_numpy(x)).numpy()
        assert got.shape == want.shape
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=kind)


@needs_torch
@pytest.mark.parametrize("kind", ["mlp", "conv", "patches", "resnet", "audio", "text"])
def test_to_torch_agrees_on_large_empty_and_odd_batches(runs, kind):
    """Batches past rlcpc's chunk of 256 items, empty batches, odd waveform lengths and
    empty or short sentences."""
    enc = rlcpc.load_encoder(runs[kind])
    net = rlcpc.to_torch(enc)
    rng = np.random.default_rng(9)
    batches = [inputs(enc, n=300 if kind in ("mlp", "text") else 20, seed=4), inputs(enc, n=0)]
    if kind == "audio":
        batches += [(0.3 * rng.standard_normal((3, n))).astype(np.float32) for n in (1, 37, 1001, 4801)]
    if kind == "text":
        batches[0] = [list(rng.integers(0, enc.spec["vocab"], int(k))) for k in rng.integers(0, 15, 300)]
        batches[0][:3] = [[], [5], []]
    for x in batches:
        want = enc(x)
        with torch.no_grad():
            got = net(x if kind == "text" else torch.from_numpy(x)).numpy()
        assert got.shape == want.shape, (kind, got.shape, want.shape)
        scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale, err_msg=kind)


@needs_torch
def test_to_torch_modules_train_like_any_module(runs):
    net = rlcpc.to_torch(runs["conv"])
    x = torch.rand(4, 24, 24, 3) * 255
    loss = net(x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
