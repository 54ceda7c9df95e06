"""DGTR (Dexterous Grasp TRansformer): a learned set-prediction proposer.

``model`` (the network, ONNX-exportable), ``data`` (training views made by the serving
preprocessing), ``train`` (Hungarian matching, DSMT, resumable runs), ``export`` (ONNX graph and
the runtime that serves it). The proposer itself is ``models.proposers.dgtr``.
"""
