"""KNOW predictors on tiny synthetic trajectories with known answers, and trajectory validation."""

import math

import pytest
import torch

from weightlab.errors import WeightlabError
from weightlab.know import KNOWNNet, Trajectory, get_predictor
from weightlab.know.predictors import KNOWN, TSV, ConsensusTA, ExpFit, LinearFit, LogFit, MagMax, TaskVector

KINDS = {
    "conv.weight": "conv",
    "fc.weight": "fc",
    "fc.bias": "bias",
    "bn.weight": "norm",
    "bn.running_mean": "buffer",
    "head.weight": "head",
}


def _traj(fn, stages=5, seed=0):
    """stages[s][key] = fn(t, base, slope) with t = S - s (oldest-forgetting first is t = 1)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "conv.weight": (4, 3, 3, 3),
        "fc.weight": (6, 8),
        "fc.bias": (6,),
        "bn.weight": (4,),
        "bn.running_mean": (4,),
        "head.weight": (2, 6),
    }
    base = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    slope = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    st = [{k: fn(float(stages - s), base[k], slope[k]).float() for k in shapes} for s in range(stages)]
    return Trajectory(st, dict(KINDS)), base, slope


def _check_untouched(pred, traj):
    assert torch.equal(pred["bn.weight"], traj.stages[0]["bn.weight"])
    assert torch.equal(pred["bn.running_mean"], traj.stages[0]["bn.running_mean"])


@pytest.mark.parametrize(
    "cls,phi",
    [
        (LinearFit, lambda t, s: t),
        (LogFit, lambda t, s: math.log(t)),
        (ExpFit, lambda t, s: math.exp(t - s)),
    ],
)
def test_curve_fits_extrapolate_their_own_curve_exactly(cls, phi):
    s = 5
    traj, base, slope = _traj(lambda t, a, b: a.double() + b.double() * phi(t, s), stages=s)
    out = cls().predict_steps(traj, [1, 2, 3])
    for k in (1, 2, 3):
        for key in ("conv.weight", "fc.weight", "fc.bias", "head.weight"):
            want = base[key].double() + slope[key].double() * phi(s + k, s)
            assert torch.allclose(out[k][key].double(), want, atol=1e-5, rtol=1e-5), (cls, k, key)
        _check_untouched(out[k], traj)


def test_linear_fit_continues_a_linear_trajectory():
    # Θ^s = A + s·B  ⇒  Θ̂^{-k} = A − k·B
    traj, base, slope = _traj(lambda t, a, b: a + (5 - t) * b)
    out = LinearFit().predict(traj, 2)
    assert torch.allclose(out["fc.weight"], base["fc.weight"] - 2 * slope["fc.weight"], atol=1e-5)


def test_task_vector_formula():
    traj, _, _ = _traj(lambda t, a, b: a + b * t * t)
    for lam in (0.2, 1.5):
        out = TaskVector(lam=lam).predict_steps(traj, [1, 2, 3])
        for k in (1, 2, 3):
            t0, tk = traj.stages[0]["conv.weight"], traj.stages[k]["conv.weight"]
            assert torch.allclose(out[k]["conv.weight"], t0 + lam * (t0 - tk), atol=1e-6)
            _check_untouched(out[k], traj)


def _hand_trajectory(taus):
    """Θ⁰ = 0 and Θ^j = −τ_j, so the task vectors Θ⁰ − Θ^j are exactly ``taus``."""
    zero = torch.zeros_like(taus[0])
    stages = [{"w": zero}] + [{"w": -t} for t in taus]
    return Trajectory(stages, {"w": "fc"})


def test_magmax_picks_the_largest_magnitude_update_with_its_sign():
    taus = [
        torch.tensor([[1.0, -3.0, 0.5, 0.0]]),
        torch.tensor([[-2.0, 1.0, 0.4, 0.0]]),
        torch.tensor([[0.5, 2.0, -0.6, 0.1]]),
    ]
    traj = _hand_trajectory(taus)
    out = MagMax(lam=1.0).predict_steps(traj, [1, 2, 3])
    assert torch.equal(out[1]["w"], taus[0])  # one candidate: Task Vector
    assert torch.equal(out[2]["w"], torch.tensor([[-2.0, -3.0, 0.5, 0.0]]))
    assert torch.equal(out[3]["w"], torch.tensor([[-2.0, -3.0, -0.6, 0.1]]))
    tv = TaskVector(lam=0.2).predict(traj, 1)["w"]
    assert torch.equal(MagMax(lam=0.2).predict(traj, 1)["w"], tv)


def test_consensus_keeps_only_coordinates_most_candidates_agree_on():
    taus = [
        torch.tensor([[1.0, 1.0, 0.0, 1.0]]),
        torch.tensor([[1.0, 0.0, 0.0, -1.0]]),
        torch.tensor([[1.0, 0.0, 1.0, 0.0]]),
    ]
    traj = _hand_trajectory(taus)
    out = ConsensusTA(lam=1.0, tall_lambda=0.4, min_agree=2).predict(traj, 3)["w"]
    # TALL mask m_j = |τ_j| ≥ 0.4·|τ_MTL − τ_j|. Coordinate 0: 1 ≥ 0.8 for all three (kept, sum 3);
    # 1 and 2: only the one non-zero candidate passes (dropped, although plain task arithmetic
    # would move them by 1); 3: sum 0, all three masks pass (kept, but the sum is 0)
    assert torch.equal(out, torch.tensor([[3.0, 0.0, 0.0, 0.0]]))


def test_consensus_refuses_fewer_than_three_candidates():
    traj = _hand_trajectory([torch.ones(1, 3)] * 4)
    with pytest.raises(WeightlabError, match="at least 3 candidate"):
        ConsensusTA().predict(traj, 2)


def test_tsv_keeps_the_top_singular_components():
    u = torch.linalg.qr(torch.randn(10, 10))[0]
    v = torch.linalg.qr(torch.randn(8, 8))[0]
    sigma = torch.tensor([5.0, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0])
    tau = (u[:, :8] * sigma) @ v.T
    traj = _hand_trajectory([tau])
    out = TSV(lam=1.0, keep=0.1).predict(traj, 1)["w"]  # keep ceil(0.1·8) = 1 component
    want = 5.0 * torch.outer(u[:, 0], v[:, 0])
    assert torch.allclose(out, want, atol=1e-5)


def test_tsv_merge_of_orthogonal_low_rank_updates_is_their_sum():
    u = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))[0]
    taus = [3.0 * torch.outer(u[:, j], v[:, j]) for j in range(3)]  # rank 1 each, mutually orthogonal
    traj = _hand_trajectory([t.float() for t in taus])
    out = TSV(lam=1.0, keep=0.1).predict(traj, 3)["w"]
    assert torch.allclose(out.double(), sum(taus), atol=1e-5)


def _const_net(bias: float) -> KNOWNNet:
    net = KNOWNNet()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias.fill_(bias)
    return net.eval()


def test_known_predictor_routes_kinds_and_slides_the_window():
    traj, _, _ = _traj(lambda t, a, b: a + b * t)
    # residual = tanh(bias), different for each hypermodel
    nets = {"Conv": _const_net(0.1), "FC": _const_net(0.2), "Bias": _const_net(-0.3)}
    out = KNOWN(weights=nets).predict_steps(traj, [1, 2, 3])
    for key, model in (("conv.weight", "Conv"), ("fc.weight", "FC"), ("head.weight", "FC"), ("fc.bias", "Bias")):
        r = math.tanh(nets[model].head.bias.item())
        for k in (1, 2, 3):
            assert torch.allclose(out[k][key], traj.stages[0][key] + k * r, atol=1e-5), (key, k)
    _check_untouched(out[3], traj)


def test_known_predictor_feeds_the_oldest_stage_first():
    traj, _, _ = _traj(lambda t, a, b: 0.1 * a + 0.01 * b * t * t)
    torch.manual_seed(1)
    net = KNOWNNet().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)  # an order-sensitive function of the 5 values
        seq = torch.stack([traj.stages[s]["fc.bias"] for s in range(4, -1, -1)], dim=1)  # [Θ⁴, …, Θ⁰]
        want = seq[:, -1] + net(seq)
        reversed_order = seq[:, 0] + net(seq.flip(1))
    out = KNOWN(kinds="bias", weights={"Conv": net, "FC": net, "Bias": net}).predict(traj, 1)
    assert torch.allclose(out["fc.bias"], want, atol=1e-6)
    assert not torch.allclose(out["fc.bias"], reversed_order, atol=1e-3)


def test_known_needs_five_stages():
    traj, _, _ = _traj(lambda t, a, b: a + b * t, stages=4)
    nets = {"Conv": _const_net(0.1), "FC": _const_net(0.1), "Bias": _const_net(0.1)}
    with pytest.raises(WeightlabError, match="at least 5 stages"):
        KNOWN(weights=nets).predict(traj, 1)


def test_too_few_stages_for_a_step_is_a_clear_error():
    traj, _, _ = _traj(lambda t, a, b: a + b * t, stages=3)
    with pytest.raises(WeightlabError, match="at least 4 stages"):
        TaskVector().predict(traj, 3)


def test_mismatched_keys_shapes_and_non_finite_values_are_refused():
    traj, _, _ = _traj(lambda t, a, b: a + b * t)
    stages = [dict(s) for s in traj.stages]
    bad = [dict(s) for s in stages]
    del bad[2]["fc.bias"]
    with pytest.raises(WeightlabError, match="stage 2 has different keys.*missing fc.bias"):
        Trajectory(bad, dict(KINDS))
    bad = [dict(s) for s in stages]
    bad[3]["fc.weight"] = torch.zeros(6, 9)
    with pytest.raises(WeightlabError, match=r"stage 3 has different shapes.*fc.weight \(6, 9\)"):
        Trajectory(bad, dict(KINDS))
    for value in (float("nan"), float("inf")):
        bad = [dict(s) for s in stages]
        bad[1]["conv.weight"] = bad[1]["conv.weight"].clone()
        bad[1]["conv.weight"][0, 0, 0, 0] = value
        with pytest.raises(WeightlabError, match="stage 1: 'conv.weight' contains NaN or Inf"):
            Trajectory(bad, dict(KINDS))


def test_predictors_only_touch_their_kinds_and_report_them():
    traj, _, _ = _traj(lambda t, a, b: a + b * t)
    p = TaskVector(kinds="conv,bias")
    out = p.predict(traj, 1)
    assert torch.equal(out["fc.weight"], traj.stages[0]["fc.weight"])
    assert not torch.equal(out["conv.weight"], traj.stages[0]["conv.weight"])
    d = p.describe(traj)
    assert d["touched"] == {"conv": 108, "bias": 6}
    assert d["untouched"] == {"fc": 48, "norm": 4, "buffer": 4, "head": 12}
    with pytest.raises(WeightlabError, match="unknown parameter kind"):
        TaskVector(kinds="conv,bn")


def test_registry_names_and_unknown_predictor():
    assert isinstance(get_predictor("TaskVector"), TaskVector)
    assert isinstance(get_predictor("log-fit"), LogFit)
    assert isinstance(get_predictor("TSV"), TSV)
    with pytest.raises(WeightlabError, match="unknown KNOW predictor 'foo'"):
        get_predictor("foo")


def test_trajectory_save_load_round_trip(tmp_path):
    traj, _, _ = _traj(lambda t, a, b: a + b * t)
    traj.meta = {"note": "x"}
    traj.save(tmp_path / "t")
    back = Trajectory.load(tmp_path / "t")
    assert back.num_stages == 5 and back.kinds == traj.kinds and back.meta["note"] == "x"
    for a, b in zip(traj.stages, back.stages):
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(WeightlabError, match="not a trajectory folder"):
        Trajectory.load(tmp_path)
