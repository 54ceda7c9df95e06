"""Object sets and point clouds: procedural and pybullet_data objects, train/validation/test
splits, complete and single-view partial clouds (table in view, sensor noise), PLY I/O.

Modules: ``procedural`` (shape families), ``pybullet_set`` (meshes from the installed
pybullet_data), ``catalog`` (ids, splits, manifest, ``load_mesh``), ``clouds`` (complete clouds,
table placement), ``camera`` (the virtual depth camera: intrinsics, depth rendering, noise), ``ply`` (codec), ``meshops``
(winding numbers, mass properties), ``export`` (CLI helpers). Units: metres; z up.
"""

from .camera import Camera, CameraIntrinsics, NoiseModel, PartialView, partial_cloud, random_camera
from .catalog import ObjectEntry, entry, load_mesh, manifest, objects, split_of, write_manifest
from .clouds import complete_cloud, place_on_table
from .export import export_cloud, list_objects
from .meshops import MassProperties, mass_properties
from .ply import ply_has_faces, read_ply, read_ply_bytes, read_points_npy, write_ply

__all__ = [
    "Camera",
    "CameraIntrinsics",
    "MassProperties",
    "NoiseModel",
    "ObjectEntry",
    "PartialView",
    "complete_cloud",
    "entry",
    "export_cloud",
    "list_objects",
    "load_mesh",
    "manifest",
    "mass_properties",
    "objects",
    "partial_cloud",
    "place_on_table",
    "ply_has_faces",
    "random_camera",
    "read_ply",
    "read_ply_bytes",
    "read_points_npy",
    "split_of",
    "write_manifest",
    "write_ply",
]
