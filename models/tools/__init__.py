"""Data and developer tools: dataset synthesis (``synth``), offline evaluation of grasp files
(``evaluate``), the optimisation demo (``demo``) and MuJoCo pictures of grasps (``pictures``).

Nothing in serving imports these; ``models.cli`` exposes them as verbs.
"""
