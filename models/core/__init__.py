"""The math core: rotations (torch and numpy), point-cloud geometry and cloud checks.

No I/O, no weights, no hand: every other part of ``models`` builds on these, and they import
nothing from ``models``.
"""
