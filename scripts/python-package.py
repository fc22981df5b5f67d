"""Figures of the Python package for docs/results.md, with any interpreter that has the
package installed (README, "From Python"): training throughput through
`rlcpc.train` on the native and the Gymnasium CartPole, seeds to solve the Gymnasium
CartPole from Python with their evaluation, and the encoder forward pass of rlcpc
against the `to_torch` module (where torch is installed).

Usage: python scripts/python-package.py OUT_DIR
"""

import pathlib
import statistics
import sys
import time

import numpy as np

import rlcpc

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/python-package")
out.mkdir(parents=True, exist_ok=True)
print(f"rlcpc {rlcpc.__version__}, Python {sys.version.split()[0]}, numpy {np.__version__}")


def median(xs):
    return statistics.median(xs)


# 1. Throughput: fixed budgets, no early stop, seeds 1-3.
for env, steps in (("CartPole-v1", 500_000), ("gymnasium:CartPole-v1", 100_000)):
    sps = []
    for seed in (1, 2, 3):
        rlcpc.train(
            "cartpole",
            out=out / f"sps-{env.replace(':', '-')}-s{seed}",
            seed=seed,
            quiet=True,
            env={"id": env},
            run={"total_steps": steps, "target_return": 0},
        )
        sps.append(rlcpc.train.last_summary["steps_per_sec"])
    print(f"throughput {env}: median {median(sps):,.0f} env steps/s (seeds 1-3: {', '.join(f'{x:,.0f}' for x in sps)})")

# 2. Solve Gymnasium's CartPole-v1 from Python (the preset's target 475), seeds 1-5.
rows = []
for seed in range(1, 6):
    t = time.time()
    run = rlcpc.train(
        "cartpole", out=out / "solve" / f"seed-{seed}", seed=seed, quiet=True, env={"id": "gymnasium:CartPole-v1"}
    )
    s = rlcpc.train.last_summary
    ev = rlcpc.evaluate(run, episodes=20, seed=100)
    rows.append((seed, s["solved_at_env_steps"], time.time() - t, ev["mean"], ev["std"]))
    print(
        f"solve seed {seed}: target reached at {s['solved_at_env_steps']} env steps, "
        f"{time.time() - t:.1f} s wall; greedy eval {ev['mean']:.1f} +/- {ev['std']:.1f} (20 episodes)"
    )
solved = [r[1] for r in rows if r[1] is not None]
print(f"solved {len(solved)} of {len(rows)}; median env steps {median(solved) if solved else 'n/a'}")

# 3. Encoder forward: rlcpc's pass against the to_torch module, batch 1024, medians of 5.
enc = rlcpc.load_encoder(out / "solve" / "seed-1")
x = np.random.default_rng(0).normal(size=(1024, 4)).astype(np.float32)
times = []
for _ in range(5):
    t = time.perf_counter()
    y = enc(x)
    times.append(time.perf_counter() - t)
print(f"rlcpc forward, mlp, 1024 items: {1024 / median(times):,.0f} items/s")
try:
    import torch
except ImportError:
    print("torch not installed: to_torch skipped")
else:
    net = rlcpc.to_torch(enc)
    torch.set_num_threads(1)
    with torch.no_grad():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            yt = net(torch.from_numpy(x)).numpy()
            times.append(time.perf_counter() - t)
    print(
        f"to_torch forward, mlp, 1024 items: {1024 / median(times):,.0f} items/s (torch {torch.__version__}, "
        f"1 thread); largest difference from rlcpc {np.abs(yt - y).max():.2e}"
    )
