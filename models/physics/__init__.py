"""A hand against an object: batched grasps (``grasp_batch``), the differentiable synthesis
energy (``energy``), grasp quality and set diversity metrics (``quality``, ``diversity``) and
initial palm placements (``init_poses``).

Built on ``models.core``, ``models.hands`` and ``models.grasp``; no I/O, no weights.
"""
