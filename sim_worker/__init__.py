"""Simulation workers (MuJoCo, Isaac Gym) and the rollout queue consumer. Built in the simulation issues."""
