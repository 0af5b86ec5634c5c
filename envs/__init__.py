"""sparsernn.envs."""
