"""Batched, differentiable hand model in PyTorch: kinematics, collision geometry, point sets.

Everything numeric (body offsets, joint axes, limits, collision primitives,
tendon couplings) is read from the compiled MuJoCo model of the palm-rooted
MJCF, so this file holds no hand-specific numbers. Frames: link poses are
returned in the frame of the given root pose (the palm pose in the request
frame); ``p_world = R @ p_link + t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mujoco
import numpy as np
import torch
from torch import Tensor

from ..core.rotations import axis_angle_to_matrix
from ..device import TensorSpec
from .mjcf import hand_model, subtree_bodies
from .spec import HandSpec, load_spec

GEOM_BOX = int(mujoco.mjtGeom.mjGEOM_BOX)
GEOM_CAPSULE = int(mujoco.mjtGeom.mjGEOM_CAPSULE)
GEOM_SPHERE = int(mujoco.mjtGeom.mjGEOM_SPHERE)


@dataclass(frozen=True)
class LinkFrames:
    """World poses of every link: ``rotation`` (B, L, 3, 3), ``translation`` (B, L, 3)."""

    rotation: Tensor
    translation: Tensor

    def apply(self, link_index: Tensor, local: Tensor) -> Tensor:
        """Points rigidly attached to links, (N,) link ids and (N, 3) local coords -> (B, N, 3)."""
        r = self.rotation[:, link_index]  # (B, N, 3, 3)
        return (r @ local[None, :, :, None]).squeeze(-1) + self.translation[:, link_index]


@dataclass(frozen=True)
class Coupling:
    """Linear joint coupling from a fixed tendon: ``lo <= sum(coef * q[idx]) <= hi``."""

    name: str
    joint_index: tuple[int, ...]
    coef: tuple[float, ...]
    lo: float
    hi: float
    follower: int  # the coupled joint no actuator drives (J0); projection moves this one


def _box_distance(local: Tensor, half_extents: Tensor) -> Tensor:
    """Signed distance of points given in a box's own frame (..., 3) to the box of ``half_extents``; < 0 inside."""
    q = local.abs() - half_extents
    d: Tensor = q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)
    return d


class HandModel:
    """Kinematics and geometry of one hand on one device.

    Links are the MJCF bodies of the palm subtree in topological order (index 0
    is the palm). Each non-root link carries exactly one hinge joint; the joint
    vector follows ``spec.joints``.
    """

    def __init__(self, spec: HandSpec, ts: TensorSpec | None = None) -> None:
        self.spec = spec
        self.ts = ts or TensorSpec()
        m = hand_model(spec, root="fixed", with_visual=False)
        self.mj_model = m
        prefix = spec.mjcf.name_prefix
        root_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, spec.mjcf.root_body)
        bodies = subtree_bodies(m, root_id)
        self.link_names: list[str] = [m.body(b).name.removeprefix(prefix) for b in bodies]
        self.body_ids = bodies
        index = {b: i for i, b in enumerate(bodies)}
        self.parent: list[int] = [-1] + [index[int(m.body_parentid[b])] for b in bodies[1:]]
        joint_of_link: list[int] = [-1] * len(bodies)
        short_joint = {m.joint(j).name.removeprefix(prefix): j for j in range(m.njnt)}
        missing = [j for j in spec.joints if j not in short_joint]
        if missing:
            raise ValueError(f"hand spec {spec.name!r} names joints absent from the MJCF: {missing}")
        for qi, jname in enumerate(spec.joints):
            j = short_joint[jname]
            li = index[int(m.jnt_bodyid[j])]
            if joint_of_link[li] != -1:
                raise ValueError(f"link {self.link_names[li]} has more than one joint")
            if int(m.jnt_type[j]) != int(mujoco.mjtJoint.mjJNT_HINGE):
                raise ValueError(f"joint {jname} is not a hinge")
            joint_of_link[li] = qi
        self.joint_of_link = joint_of_link
        self.joint_names: list[str] = list(spec.joints)
        jids = [short_joint[j] for j in spec.joints]
        self.mj_joint_ids = jids
        f64 = torch.float64
        self._offset_pos = torch.tensor(np.array([m.body_pos[b] for b in bodies]), dtype=f64)
        from ..core.rotations import quat_to_matrix

        self._offset_rot = quat_to_matrix(torch.tensor(np.array([m.body_quat[b] for b in bodies]), dtype=f64))
        axes = np.zeros((len(bodies), 3))
        anchors = np.zeros((len(bodies), 3))
        for li, qi in enumerate(joint_of_link):
            if qi >= 0:
                axes[li] = m.jnt_axis[jids[qi]] / np.linalg.norm(m.jnt_axis[jids[qi]])
                anchors[li] = m.jnt_pos[jids[qi]]
        self._axis = torch.tensor(axes, dtype=f64)
        self._anchor = torch.tensor(anchors, dtype=f64)
        self.lower = torch.tensor(np.array([m.jnt_range[j][0] for j in jids]), dtype=f64)
        self.upper = torch.tensor(np.array([m.jnt_range[j][1] for j in jids]), dtype=f64)

        # couplings from the named fixed tendons
        couplings = []
        for tname in spec.coupling_tendons:
            t = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_TENDON, prefix + tname)
            if t < 0:
                raise ValueError(f"coupling tendon {tname} not in MJCF")
            adr, num = int(m.tendon_adr[t]), int(m.tendon_num[t])
            idx, coef = [], []
            for w in range(adr, adr + num):
                jn = m.joint(int(m.wrap_objid[w])).name.removeprefix(prefix)
                idx.append(self.joint_names.index(jn))
                coef.append(float(m.wrap_prm[w]))
            lo, hi = (float(v) for v in m.tendon_range[t])
            actuated = {
                self.joint_names.index(m.joint(int(m.actuator_trnid[a, 0])).name.removeprefix(prefix))
                for a in range(m.nu)
                if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
                and m.joint(int(m.actuator_trnid[a, 0])).name.removeprefix(prefix) in self.joint_names
            }
            passive = [i for i in idx if i not in actuated]
            if len(passive) != 1:
                raise ValueError(f"coupling {tname}: expected exactly one unactuated joint, got {passive}")
            couplings.append(Coupling(tname, tuple(idx), tuple(coef), lo, hi, passive[0]))
        self.couplings = couplings

        # collision primitives
        gtype, gsize, glink, gpos, grot, gname = [], [], [], [], [], []
        for short in spec.collision_geoms:
            g = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, prefix + short)
            if g < 0:
                raise ValueError(f"collision geom {short} not in MJCF")
            t = int(m.geom_type[g])
            if t not in (GEOM_BOX, GEOM_CAPSULE, GEOM_SPHERE):
                raise ValueError(f"collision geom {short}: only boxes, capsules and spheres are supported")
            gtype.append(t)
            gsize.append(np.array(m.geom_size[g]))
            glink.append(index[int(m.geom_bodyid[g])])
            gpos.append(np.array(m.geom_pos[g]))
            grot.append(np.array(m.geom_quat[g]))
            gname.append(short)
        self.geom_names = gname
        self.geom_type = gtype
        self._round_index = torch.tensor([i for i, t in enumerate(gtype) if t != GEOM_BOX], dtype=torch.long)
        self._box_index = torch.tensor([i for i, t in enumerate(gtype) if t == GEOM_BOX], dtype=torch.long)
        self._is_capsule = torch.tensor([1.0 if t == GEOM_CAPSULE else 0.0 for t in gtype], dtype=f64)
        self._is_box = torch.tensor([t == GEOM_BOX for t in gtype])
        # the distance from a primitive's centre to its farthest surface point (a broad phase's bound)
        self.geom_bounding_radius = torch.tensor(
            [float(np.linalg.norm(s_)) if t == GEOM_BOX else float(s_[0] + (s_[1] if t == GEOM_CAPSULE else 0.0))
             for t, s_ in zip(gtype, gsize)], dtype=f64)
        self.geom_link = torch.tensor(glink)
        self._geom_size = torch.tensor(np.array(gsize), dtype=f64)
        self._geom_pos = torch.tensor(np.array(gpos), dtype=f64)
        self._geom_rot = quat_to_matrix(torch.tensor(np.array(grot), dtype=f64))

        link_idx = {n: i for i, n in enumerate(self.link_names)}
        cc = spec.contact_candidates
        self.contact_link = torch.tensor([link_idx[n] for n in cc.link])
        self._contact_local = torch.tensor(cc.xyz, dtype=f64)
        kp = spec.penetration_keypoints
        self.keypoint_link = torch.tensor([link_idx[n] for n in kp.link])
        self._keypoint_local = torch.tensor(kp.xyz, dtype=f64)
        self._keypoint_radius = torch.tensor(kp.radius, dtype=f64)
        # keypoint pairs checked for self-penetration: different links that are not adjacent
        adjacent = self._adjacent_links()
        ignore = {frozenset((link_idx[a], link_idx[b])) for a, b in spec.self_collision_ignore}
        kl = self.keypoint_link.tolist()
        pairs = [
            (i, j)
            for i in range(len(kl))
            for j in range(i + 1, len(kl))
            if kl[i] != kl[j] and frozenset((kl[i], kl[j])) not in adjacent | ignore
        ]
        self.self_pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        self.open_pose = torch.tensor(spec.open_pose, dtype=f64)
        self.init_pose = torch.tensor(spec.init_pose, dtype=f64)
        # per joint +1 / -1 / 0: the sign that closes the hand (the spec's, or sign(init - open))
        self.closing_direction = torch.tensor(spec.closing_direction, dtype=f64)
        self.approach_direction = torch.tensor(spec.approach_direction, dtype=f64)
        self.palm_center = torch.tensor(spec.palm_center, dtype=f64)
        # links carrying a hinge, their joint index, and per link which of them lie on its chain from the palm
        self._joint_links = torch.tensor([li for li in range(len(bodies)) if joint_of_link[li] >= 0], dtype=torch.long)
        self._joint_of_joint_link = torch.tensor([joint_of_link[li] for li in self._joint_links.tolist()], dtype=torch.long)
        chain = np.zeros((len(bodies), len(self._joint_links)))
        slot = {li: k for k, li in enumerate(self._joint_links.tolist())}
        for li in range(len(bodies)):
            a = li
            while a > 0:
                if a in slot:
                    chain[li, slot[a]] = 1.0
                a = self.parent[a]
        self._chain = torch.tensor(chain, dtype=f64)
        self._move(self.ts)

    # ------------------------------------------------------------------ set-up helpers
    def _adjacent_links(self) -> set[frozenset[int]]:
        """Links that touch by construction: parent-child, skipping links without collision geoms."""
        has_geom = set(self.geom_link.tolist()) | set(self.keypoint_link.tolist())

        def geom_parent(i: int) -> int:
            p = self.parent[i]
            while p > 0 and p not in has_geom:
                p = self.parent[p]
            return p

        adj = set()
        for i in range(1, len(self.link_names)):
            p = geom_parent(i)
            if p >= 0:
                adj.add(frozenset((i, p)))
        return adj

    def _move(self, ts: TensorSpec) -> None:
        for name, val in list(vars(self).items()):
            if isinstance(val, Tensor):
                if val.is_floating_point():
                    setattr(self, name, val.to(device=ts.device, dtype=ts.dtype))
                else:
                    setattr(self, name, val.to(device=ts.device))
        self.ts = ts

    def to(self, ts: TensorSpec) -> HandModel:
        """A copy of this model on another device / dtype."""
        new = object.__new__(HandModel)
        new.__dict__.update(self.__dict__)
        new._move(ts)
        return new

    # ------------------------------------------------------------------ kinematics
    @property
    def num_links(self) -> int:
        return len(self.link_names)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def forward_kinematics(self, root_pos: Tensor, root_rot: Tensor, joints: Tensor) -> LinkFrames:
        """root_pos (B, 3), root_rot (B, 3, 3), joints (B, J) -> link frames in the root's parent frame."""
        b = joints.shape[0]
        rots: list[Tensor] = [root_rot]
        poss: list[Tensor] = [root_pos]
        # every joint's rotation and anchor shift at once (one batched op instead of one per link)
        jl = [li for li in range(self.num_links) if self.joint_of_link[li] >= 0]
        slot = {li: k for k, li in enumerate(jl)}
        rj_all = axis_angle_to_matrix(self._axis[jl].expand(b, len(jl), 3), joints[:, [self.joint_of_link[li] for li in jl]])
        anchors = self._anchor[jl]  # rotation about an axis through the anchor point (0 for every Shadow joint)
        shift_all = anchors - (rj_all @ anchors[:, :, None]).squeeze(-1)  # (B, Lj, 3)
        for li in range(1, self.num_links):
            p = self.parent[li]
            r_p, t_p = rots[p], poss[p]
            r = r_p @ self._offset_rot[li]
            t = t_p + (r_p @ self._offset_pos[li])
            if li in slot:
                k = slot[li]
                t = t + (r @ shift_all[:, k, :, None]).squeeze(-1)
                r = r @ rj_all[:, k]
            rots.append(r)
            poss.append(t)
        return LinkFrames(torch.stack(rots, 1), torch.stack(poss, 1))

    def point_jacobians(self, frames: LinkFrames, link: Tensor, world: Tensor) -> Tensor:
        """(B, K, 3, J) d(point)/d(joints) of points ``world`` (B, K, 3) rigidly attached to links ``link`` (K,),
        at the configuration of ``frames``: for every hinge on the chain from the palm to the point's link, its
        world axis crossed with the point's offset from the axis (0 for joints off the chain)."""
        jl = self._joint_links
        r = frames.rotation[:, jl]  # (B, Lj, 3, 3): a hinge's own rotation keeps its axis, so this is its world axis frame
        axis_w = (r @ self._axis[jl][None, :, :, None]).squeeze(-1)  # (B, Lj, 3)
        origin_w = (r @ self._anchor[jl][None, :, :, None]).squeeze(-1) + frames.translation[:, jl]
        cols = torch.linalg.cross(axis_w[:, None].expand(-1, world.shape[1], -1, -1), world[:, :, None] - origin_w[:, None])
        cols = cols * self._chain[link][None, :, :, None]  # (B, K, Lj, 3)
        out = torch.zeros(*world.shape[:2], 3, self.num_joints, dtype=world.dtype, device=world.device)
        out[..., self._joint_of_joint_link] = cols.transpose(-1, -2)
        return out

    # ------------------------------------------------------------------ attached point sets
    def contact_candidates(self, frames: LinkFrames) -> Tensor:
        return frames.apply(self.contact_link, self._contact_local)

    def penetration_keypoints(self, frames: LinkFrames) -> tuple[Tensor, Tensor]:
        """Sphere centres (B, K, 3) and radii (K,)."""
        return frames.apply(self.keypoint_link, self._keypoint_local), self._keypoint_radius

    def geom_frames(self, frames: LinkFrames) -> tuple[Tensor, Tensor]:
        """World rotation (B, G, 3, 3) and position (B, G, 3) of every collision primitive."""
        r_l = frames.rotation[:, self.geom_link]
        t_l = frames.translation[:, self.geom_link]
        rot = r_l @ self._geom_rot
        pos = (r_l @ self._geom_pos[None, :, :, None]).squeeze(-1) + t_l
        return rot, pos

    # ------------------------------------------------------------------ signed distance
    def signed_distance_per_geom(self, frames: LinkFrames, points: Tensor, geoms: tuple[int, ...] | None = None) -> Tensor:
        """Signed distance (B, G, P) of points (B, P, 3) to every collision primitive; < 0 inside.
        With ``geoms``, to those primitives only, in that order: (B, len(geoms), P).

        Capsules and spheres (most of a hand) are evaluated with matmuls on (B, G, P)
        tensors, never materialising (B, G, P, 3); boxes go through their local frame.
        """
        rot, pos = self.geom_frames(frames)
        b, p = points.shape[0], points.shape[1]
        if geoms is None:
            rnd, boxes, out_rnd, out_box = self._round_index, self._box_index.tolist(), self._round_index, self._box_index.tolist()
        else:
            rnd_pos = [i for i, g in enumerate(geoms) if self.geom_type[g] != GEOM_BOX]
            out_box = [i for i, g in enumerate(geoms) if self.geom_type[g] == GEOM_BOX]
            rnd = torch.tensor([geoms[i] for i in rnd_pos], dtype=torch.long, device=points.device)
            out_rnd = torch.tensor(rnd_pos, dtype=torch.long, device=points.device)
            boxes = [geoms[i] for i in out_box]
        out = points.new_empty(b, len(self.geom_type) if geoms is None else len(geoms), p)
        if rnd.numel():
            c = pos[:, rnd]  # (B, Gr, 3) centres
            u = rot[:, rnd, :, 2]  # (B, Gr, 3) capsule axes (local z)
            half = self._geom_size[rnd, 1] * self._is_capsule[rnd]
            radius = self._geom_size[rnd, 0]
            pc = torch.einsum("bpk,bgk->bgp", points, c)
            pp = (points * points).sum(-1)[:, None, :]
            cc = (c * c).sum(-1)[..., None]
            s = torch.einsum("bpk,bgk->bgp", points, u) - (c * u).sum(-1)[..., None]  # axial coordinate
            sc = torch.maximum(torch.minimum(s, half[None, :, None]), -half[None, :, None])
            d2 = pp - 2 * pc + cc - 2 * sc * s + sc * sc
            out[:, out_rnd] = d2.clamp_min(1e-18).sqrt() - radius[None, :, None]
        for g, slot in zip(boxes, out_box):
            x = torch.einsum("bji,bpj->bpi", rot[:, g], points - pos[:, g, None])
            out[:, slot] = _box_distance(x, self._geom_size[g])
        return out

    def signed_distance_to_geom(self, frames: LinkFrames, batch_index: Tensor, geom_index: Tensor, points: Tensor) -> Tensor:
        """Signed distance (K,) of K points (K, 3) each to one primitive: ``geom_index`` (K,) of the hand
        ``batch_index`` (K,). The same formulas as :meth:`signed_distance_per_geom`, on K pairs instead
        of every (grasp, primitive, point) triple: what a sparse energy differentiates."""
        li = self.geom_link[geom_index]
        r_l = frames.rotation[batch_index, li]  # (K, 3, 3)
        t_l = frames.translation[batch_index, li]
        rot = r_l @ self._geom_rot[geom_index]
        pos = (r_l @ self._geom_pos[geom_index, :, None]).squeeze(-1) + t_l
        size = self._geom_size[geom_index]
        rel = points - pos
        # round primitives: distance to the capsule's segment (half-length 0 for a sphere) minus radius
        u = rot[:, :, 2]
        half = size[:, 1] * self._is_capsule[geom_index]
        s = (rel * u).sum(-1)
        sc = torch.maximum(torch.minimum(s, half), -half)
        d_round = (rel - sc[:, None] * u).square().sum(-1).clamp_min(1e-18).sqrt() - size[:, 0]
        # boxes: in the box frame
        x = (rot.transpose(1, 2) @ rel[..., None]).squeeze(-1)
        d_box = _box_distance(x, size)
        return torch.where(self._is_box[geom_index], d_box, d_round)

    def narrow_signed_distance(self, geom_frames: tuple[Tensor, Tensor], batch_index: Tensor, geom_index: Tensor,
                               points: Tensor) -> Tensor:
        """:meth:`signed_distance_to_geom` for a broad phase's narrow check, given the :meth:`geom_frames` already
        computed: each point goes into its primitive's own frame (an elementwise product with the rotation, no 3x3
        matmul per pair), where a capsule lies along z and a box is axis-aligned. The same distances up to float
        rounding (a few 1e-8 m in float32) and 1.6x faster on 15 000 pairs (session 20: 6.3 -> 3.9 ms); not for gradients (the
        energies differentiate :meth:`signed_distance_to_geom`, which keeps their values bit for bit)."""
        rot, pos = geom_frames
        rel = points - pos[batch_index, geom_index]
        x = (rel[:, :, None] * rot[batch_index, geom_index]).sum(1)  # R^T rel: local coordinates (K, 3)
        size = self._geom_size[geom_index]
        half = size[:, 1] * self._is_capsule[geom_index]
        s = x[:, 2]
        axial = s - torch.maximum(torch.minimum(s, half), -half)
        d_round = (x[:, 0].square() + x[:, 1].square() + axial.square()).clamp_min(1e-18).sqrt() - size[:, 0]
        d_box = _box_distance(x, size)
        return torch.where(self._is_box[geom_index], d_box, d_round)

    def signed_distance(self, frames: LinkFrames, points: Tensor) -> Tensor:
        """Signed distance (B, P) of points to the hand (union of primitives); < 0 inside."""
        return self.signed_distance_per_geom(frames, points).min(dim=1).values

    # ------------------------------------------------------------------ surface samples
    def surface_points(self, frames: LinkFrames, n: int = 1024, seed: int = 0) -> Tensor:
        """(B, n, 3) points on the collision primitives' surfaces, area-weighted, fixed per seed.

        Points on a primitive that lie inside another primitive are kept (the hand
        surface for chamfer/contact maps tolerates the small overlap at joints).
        """
        link, local = self._surface_local(n, seed)
        return frames.apply(link, local)

    def _surface_local(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        key = (n, seed, str(self.ts.device), str(self.ts.dtype))
        cache: dict[tuple[int, int, str, str], tuple[Tensor, Tensor]] = self.__dict__.setdefault("_surf_cache", {})
        if key not in cache:
            link, local = _sample_primitives(
                self.geom_type,
                self._geom_size.cpu().double().numpy(),
                self._geom_pos.cpu().double().numpy(),
                self._geom_rot.cpu().double().numpy(),
                self.geom_link.cpu().numpy(),
                n,
                seed,
            )
            cache[key] = (
                torch.as_tensor(link, device=self.ts.device),
                torch.as_tensor(local, device=self.ts.device, dtype=self.ts.dtype),
            )
        return cache[key]

    # ------------------------------------------------------------------ joints
    def joint_vector(self, joints: dict[str, float]) -> Tensor:
        unknown = set(joints) - set(self.joint_names)
        if unknown:
            raise KeyError(f"unknown joints for hand {self.spec.name!r}: {sorted(unknown)}")
        missing = set(self.joint_names) - set(joints)
        if missing:
            raise KeyError(f"missing joints for hand {self.spec.name!r}: {sorted(missing)}")
        return torch.tensor([joints[n] for n in self.joint_names], device=self.ts.device, dtype=self.ts.dtype)

    def project_joints(self, q: Tensor) -> Tensor:
        """Clamp to limits, then move each coupling's passive joint (J0) into its tendon band."""
        q = torch.maximum(torch.minimum(q, self.upper), self.lower)
        for c in self.couplings:
            last = c.follower
            lc = c.coef[c.joint_index.index(last)]
            rest = torch.zeros_like(q[..., last])
            for i, k in zip(c.joint_index, c.coef):
                if i != last:
                    rest = rest + q[..., i] * k
            lo_v, hi_v = (c.lo - rest) / lc, (c.hi - rest) / lc
            lo_v, hi_v = torch.minimum(lo_v, hi_v), torch.maximum(lo_v, hi_v)
            v = torch.maximum(torch.minimum(q[..., last], hi_v), lo_v)
            v = torch.maximum(torch.minimum(v, self.upper[last]), self.lower[last])
            q = q.clone()
            q[..., last] = v
            if len(c.joint_index) == 2:  # the follower hit its own limit: move the leader into the band
                lead = next(i for i in c.joint_index if i != last)
                kl = c.coef[c.joint_index.index(lead)]
                a, b = (c.lo - lc * v) / kl, (c.hi - lc * v) / kl
                lo_l, hi_l = torch.minimum(a, b), torch.maximum(a, b)
                q[..., lead] = torch.maximum(torch.minimum(q[..., lead], hi_l), lo_l)
        return q


def _sample_primitives(
    types: list[int], size: np.ndarray, pos: np.ndarray, rot: np.ndarray, link: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    areas = []
    for t, s in zip(types, size):
        if t == GEOM_CAPSULE:
            areas.append(2 * np.pi * s[0] * 2 * s[1] + 4 * np.pi * s[0] ** 2)
        elif t == GEOM_SPHERE:
            areas.append(4 * np.pi * s[0] ** 2)
        else:
            a, b, c = s
            areas.append(8 * (a * b + b * c + a * c))
    w = np.array(areas) / np.sum(areas)
    which = rng.choice(len(types), size=n, p=w)
    pts = np.zeros((n, 3))
    for g in range(len(types)):
        idx = np.nonzero(which == g)[0]
        k = len(idx)
        if k == 0:
            continue
        s = size[g]
        if types[g] in (GEOM_CAPSULE, GEOM_SPHERE):
            r = s[0]
            h = s[1] if types[g] == GEOM_CAPSULE else 0.0
            cyl = 2 * np.pi * r * 2 * h
            caps = 4 * np.pi * r * r
            on_cyl = rng.random(k) < cyl / (cyl + caps)
            d = rng.normal(size=(k, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            p = d * r
            p[:, 2] += np.where(d[:, 2] >= 0, h, -h)
            ang = rng.random(k) * 2 * np.pi
            z = (rng.random(k) * 2 - 1) * h
            pc = np.stack([r * np.cos(ang), r * np.sin(ang), z], 1)
            p = np.where(on_cyl[:, None], pc, p)
        else:
            a, b, c = s
            face_area = np.array([b * c, b * c, a * c, a * c, a * b, a * b])
            f = rng.choice(6, size=k, p=face_area / face_area.sum())
            u = rng.random((k, 3)) * 2 - 1
            p = u * s
            axis = f // 2
            sign = np.where(f % 2 == 0, 1.0, -1.0)
            p[np.arange(k), axis] = sign * s[axis]
        pts[idx] = p @ rot[g].T + pos[g]
    return link[which], pts


@lru_cache(maxsize=8)
def _cached(name: str, device: str, dtype: str) -> HandModel:
    from ..device import resolve

    return HandModel(load_spec(name), resolve(device, dtype))


def get_hand(name: str = "shadow", device: str = "cpu", dtype: str = "float32") -> HandModel:
    """The registered hand ``name`` on ``device`` (cached; treat as read-only)."""
    return _cached(name, device, dtype)
