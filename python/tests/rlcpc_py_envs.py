"""A Gymnasium environment with image observations for the package's tests: a 24x24 RGB
frame lit on its left or right half; action 1 for "right" and 0 for "left" earns 1, the
other action 0. Ten frames an episode, sides drawn from the env's generator."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Side(gym.Env):
    observation_space = spaces.Box(0, 255, (24, 24, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def _frame(self):
        self.side = int(self.np_random.integers(2))
        img = np.full((24, 24, 3), 20, np.uint8)
        img[:, 12 * self.side : 12 * self.side + 12, :] = 230
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        self.t += 1
        return self._frame(), reward, self.t >= 10, False, {}


gym.register("RlcpcSide-v0", entry_point=Side)
