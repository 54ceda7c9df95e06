"""The learned models: ``dgtr`` (the DGTR set-prediction network, its training and export) and
``success`` (the grasp-success predictor the scoring stage can blend in). Their shipped weights
live in ``models/weights/``.
"""
