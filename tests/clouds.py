"""Synthetic scenes shared by the pipeline and HTTP tests."""

from __future__ import annotations

import numpy as np


def box_on_table(seed: int = 0, offset=(0.0, 0.0, 0.0), face_points: int = 400, table_points: int = 1500) -> np.ndarray:
    """A 6 x 4 x 8 cm box (five visible faces sampled) standing on a 30 cm table patch at z = 0."""
    rng = np.random.default_rng(seed)
    half = np.array([0.03, 0.02, 0.04])
    faces = []
    for axis in range(3):
        for sign in (-1, 1):
            if axis == 2 and sign == -1:
                continue  # the bottom face touches the table
            p = rng.uniform(-1, 1, (face_points, 3)) * half
            p[:, axis] = sign * half[axis]
            faces.append(p)
    box = np.concatenate(faces) + np.array([0, 0, half[2]])
    table = np.c_[rng.uniform(-0.15, 0.15, (table_points, 2)), np.zeros(table_points)]
    table = table[(np.abs(table[:, 0]) > half[0] + 0.005) | (np.abs(table[:, 1]) > half[1] + 0.005)]
    return (np.concatenate([box, table]) + np.asarray(offset)).astype(np.float32)
