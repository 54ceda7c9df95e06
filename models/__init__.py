"""The grasp layer: everything about a grasp that needs neither a simulator nor a server.

Read the sub-packages bottom up; each imports only those above it in this list (checked by the
import contracts in pyproject.toml):

- ``core``: the math core: rotations, point-cloud geometry, cloud checks. Tensors in, tensors out;
  knows no hand, reads no file.
- ``hands``: hands as data (spec JSON, MJCF) and their batched kinematics.
- ``grasp`` (module): the grasp schema that crosses every boundary (CLI, API, jobs).
- ``physics``: a hand against an object: batched grasps, synthesis energy, quality and diversity
  metrics, initial palm placements.
- ``learned``: the learned models (the DGTR network and its training, the grasp-success predictor).
- ``stages``: the pipeline's stages (query, preprocess, completion, refine, scoring, intent).
- ``proposers``: the proposer registry (optimisation, DGTR).
- ``pipeline`` (module): the proposal pipeline, query → stages → proposer → stages.
- ``tools``: data and developer tools (dataset synthesis, evaluation, demo, pictures).
- ``objects``: the object catalogue, clouds and the virtual depth camera (stands alone).
- ``cli`` (module): this layer's command-line verbs; ``device`` (module): the one device module.

``data/`` and ``weights/`` hold the shipped dataset and weights.
"""
