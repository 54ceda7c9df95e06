"""DGTR (Dexterous Grasp TRansformer): a learned set-prediction proposer.

``model`` (the network, ONNX-exportable, and its input format), ``weights`` (the weight files),
``data`` (training views made by the serving preprocessing), ``train`` (Hungarian matching, DSMT,
resumable runs), ``export`` (ONNX graph and the runtime that serves it). The proposer itself is
``models.proposers.dgtr``; it serves through ``model``, ``weights`` and ``export`` and never
imports ``data`` or ``train`` (checked by the import contracts in pyproject.toml).
"""
