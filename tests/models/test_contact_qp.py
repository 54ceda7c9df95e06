"""The contact-force QP energy against references: SLSQP on the same QP, a brute-force projection,
and a two-finger pinch worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from models.physics.contact_qp import (
    ContactQPConfig,
    QPWarmStart,
    contact_qp_energy,
    grasp_matrix,
    project_cone,
    solve_forces,
    task_wrenches,
)


def _slsqp(g: np.ndarray, w: np.ndarray, cfg: ContactQPConfig) -> float:
    """The QP's optimum value by a general solver (reference)."""
    c = g.shape[1] // 3

    def obj(z: np.ndarray) -> float:
        r = g @ z - w
        return float(r @ r + cfg.ridge * np.sum(z[0::3] ** 2))

    cons = [{"type": "ineq", "fun": lambda z, i=i: cfg.mu * z[3 * i] - np.hypot(z[3 * i + 1], z[3 * i + 2])} for i in range(c)]
    bounds = [b for _ in range(c) for b in ((cfg.p_min, cfg.p_max), (None, None), (None, None))]
    z0 = np.zeros(3 * c)
    z0[0::3] = 0.5
    res = minimize(obj, z0, constraints=cons, bounds=bounds, method="SLSQP", options={"maxiter": 500, "ftol": 1e-12})
    return float(res.fun)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solver_reaches_the_reference_optimum(seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = ContactQPConfig(iterations=100)
    p = torch.nn.functional.normalize(torch.randn(1, 5, 3, generator=gen, dtype=torch.float64), dim=-1) * 0.04
    n = torch.nn.functional.normalize(p + 0.3 * torch.randn(1, 5, 3, generator=gen, dtype=torch.float64), dim=-1)
    w = task_wrenches(cfg.k, dtype=torch.float64)
    g = grasp_matrix(p, n, torch.zeros(1, 3, dtype=torch.float64), cfg.torque_scale)
    f = solve_forces(g, w, cfg).reshape(1, 6, -1)
    r = torch.einsum("bkn,bmn->bmk", g, f) - w
    ours = ((r**2).sum(-1) + cfg.ridge * (f[..., 0::3] ** 2).sum(-1))[0].numpy()
    ref = np.array([_slsqp(g[0].numpy(), wj, cfg) for wj in w.numpy()])
    assert np.allclose(ours, ref, atol=2e-4), (ours, ref)
    # feasible: inside the cones and the pressure bounds
    z = f.reshape(6, 5, 3)
    assert bool((z[..., 1:].norm(dim=-1) <= cfg.mu * z[..., 0] + 1e-9).all())
    assert bool((z[..., 0] >= cfg.p_min - 1e-9).all() and (z[..., 0] <= cfg.p_max + 1e-9).all())


def test_projection_is_the_nearest_feasible_point():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(200, 3, generator=gen, dtype=torch.float64) * 1.5
    mu, lo, hi = 0.3, 0.05, 1.0
    proj = project_cone(z, mu, lo, hi)
    # brute force over a fine polar grid of the feasible set
    p = torch.linspace(lo, hi, 200, dtype=torch.float64)
    rad = torch.linspace(0, 1, 60, dtype=torch.float64)
    ang = torch.linspace(0, 2 * np.pi, 121, dtype=torch.float64)[:-1]
    pp, rr, aa = torch.meshgrid(p, rad, ang, indexing="ij")
    grid = torch.stack([pp, mu * pp * rr * torch.cos(aa), mu * pp * rr * torch.sin(aa)], -1).reshape(-1, 3)
    best = torch.cdist(z, grid).min(dim=1).values
    ours = (z - proj).norm(dim=-1)
    assert bool((ours <= best + 1e-9).all())  # never farther than any feasible grid point
    assert bool((best - ours < 0.02).all())  # and the grid gets close to it (grid spacing)


def test_pinch_energy_by_hand():
    """Two opposed fingertips on the x axis: the x forces are met; along y and z only friction
    (at most mu * (p1 + p2) = 0.2) answers a task force of 0.5, so each of those four leaves at least
    0.3; the solver leaves exactly that."""
    cfg = ContactQPConfig(iterations=200, ridge=0.0)
    pts = torch.tensor([[[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0]]], dtype=torch.float64)
    nrm = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]], dtype=torch.float64)
    e = contact_qp_energy(pts, nrm, torch.zeros(1, 3, dtype=torch.float64), cfg)
    assert float(e) == pytest.approx(4 * 0.3**2, abs=1e-6)
    # the same contacts rotated to face each other along y: same energy (no preferred axis)
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    e2 = contact_qp_energy(pts @ rot.T, nrm @ rot.T, torch.zeros(1, 3, dtype=torch.float64), cfg)
    assert float(e2) == pytest.approx(float(e), abs=1e-6)


def test_energy_gradient_moves_contacts_towards_balance():
    """Three contacts crowded on one side: a gradient step on the points lowers the energy."""
    cfg = ContactQPConfig()
    pts = torch.tensor([[[0.03, 0.0, 0.0], [-0.03, 0.01, 0.0], [-0.03, -0.01, 0.01]]], dtype=torch.float64, requires_grad=True)
    nrm = torch.nn.functional.normalize(pts.detach(), dim=-1)
    center = torch.tensor([[0.0, 0.0, 0.02]], dtype=torch.float64)
    e0 = contact_qp_energy(pts, nrm, center, cfg)
    (g,) = torch.autograd.grad(e0.sum(), pts)
    assert float(g.norm()) > 0
    e1 = contact_qp_energy(pts.detach() - 1e-3 * g / g.norm(), nrm, center, cfg)
    assert float(e1) < float(e0.detach())


def test_warm_start_follows_moving_contacts():
    """Contacts moved a little per call, as an optimiser's steps move them: the warm-started short
    solve stays near a long cold solve (400 iterations), far nearer than a cold solve as short."""
    from dataclasses import replace

    gen = torch.Generator().manual_seed(0)
    b, c = 32, 8
    pts = torch.nn.functional.normalize(torch.randn(b, c, 3, generator=gen, dtype=torch.float64), dim=-1) * 0.04
    nrm = torch.nn.functional.normalize(pts / 0.04 + 0.3 * torch.randn(b, c, 3, generator=gen, dtype=torch.float64), dim=-1)
    center = torch.zeros(b, 3, dtype=torch.float64)
    cfg = ContactQPConfig(k=1.0)
    warm = QPWarmStart()
    contact_qp_energy(pts, nrm, center, cfg, warm)
    assert warm.forces is not None and warm.forces.shape == (b, 6, c, 3)
    for _ in range(10):
        pts = pts + 1e-3 * torch.randn(pts.shape, generator=gen, dtype=torch.float64)
        nrm = torch.nn.functional.normalize(nrm + 0.02 * torch.randn(nrm.shape, generator=gen, dtype=torch.float64), dim=-1)
        ref = contact_qp_energy(pts, nrm, center, replace(cfg, iterations=400))
        rel_warm = ((contact_qp_energy(pts, nrm, center, cfg, warm) - ref) / ref).abs().median()
        short = replace(cfg, iterations=cfg.warm_iterations)
        rel_cold = ((contact_qp_energy(pts, nrm, center, short) - ref) / ref).abs().median()
        assert float(rel_warm) < 0.05
        assert float(rel_warm) < 0.25 * float(rel_cold)
    # a batch of another shape starts cold (no error, forces replaced)
    contact_qp_energy(pts[:4], nrm[:4], center[:4], cfg, warm)
    assert warm.forces.shape == (4, 6, c, 3)
