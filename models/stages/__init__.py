"""The stages of the proposal pipeline (``models.pipeline`` runs them in this order):
``query`` (the validated request), ``preprocess`` (cloud checks, downsampling, normals, table),
``completion`` (mirror completion of a single view), the proposer (``models.proposers``),
``refine`` (AB-TTA-style refinement), ``scoring`` (scores and diverse selection) and
``intent`` (text instructions: parse, priors, scoring).
"""
