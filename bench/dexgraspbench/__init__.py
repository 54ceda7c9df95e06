"""DexGraspBench side of the referee cross-check: the grasp conversion (``convert``) and the
driver run in DexGraspBench's own environment (``run_fc_mocap``)."""
