#!/usr/bin/env python3
"""Stable-Baselines3 A2C's training throughput on CartPole-v1, the baseline of the
CartPole MLP target in docs/results.md ("Throughput near the machine's limit").

SB3's defaults for A2C (MlpPolicy: separate 64-64 tanh networks for policy and value,
RMSProp, n_steps = 5), a DummyVecEnv of --envs environments (SB3's make_vec_env), one
torch thread (the rlcpc run it is compared with uses one learner thread). Each repeat
trains a fresh model for --steps env steps with no evaluation and no logging; env steps
per second are the steps over the wall-clock time of `learn`. Prints one JSON object.

    python scripts/sb3-a2c.py --envs 16 --steps 100000 --repeats 3
"""

import argparse
import json
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", type=int, default=16, help="environments (default 16)")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="repeats (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = p.parse_args()

    import torch
    import stable_baselines3
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(a.threads)
    runs = []
    for seed in range(1, a.repeats + 1):
        env = make_vec_env("CartPole-v1", n_envs=a.envs, seed=seed)
        model = A2C("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
        t = time.perf_counter()
        model.learn(total_timesteps=a.steps)
        runs.append(a.steps / (time.perf_counter() - t))
        env.close()
    print(
        json.dumps(
            {
                "sb3": stable_baselines3.__version__,
                "torch": torch.__version__,
                "envs": a.envs,
                "steps": a.steps,
                "median_steps_per_sec": statistics.median(runs),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
