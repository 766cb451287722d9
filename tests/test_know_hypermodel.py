"""KNOWN port: golden parity with the authors' Keras model, the folded kernel, the h5 loader."""

import h5py
import numpy as np
import pytest
import torch

from weightlab.errors import WeightlabError
from weightlab.know import KNOWNNet, load_keras_known, load_official_known
from weightlab.know.hypermodel import count_parameters

KINDS = ("Conv", "FC", "Bias")


def _random_net(convention="raw", seed=0, scale=0.3):
    torch.manual_seed(seed)
    net = KNOWNNet(convention)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, scale)
    return net.eval()


def test_parameter_count_is_9425():
    assert count_parameters(KNOWNNet()) == 9425


@pytest.mark.parametrize("kind", KINDS)
def test_official_weights_reproduce_the_golden_residuals(shared, kind):
    folder = shared / "reference" / "known_official"
    net = load_official_known(folder / f"KNOWN_{kind}.h5")
    with np.load(folder / "known_official_golden.npz") as z:
        seq, want = torch.from_numpy(z[f"{kind}_seq"]), torch.from_numpy(z[f"{kind}_residual"])
    with torch.no_grad():
        plain = net(seq)
    fused = net.fused()(seq)
    assert plain.shape == want.shape == (4096,)
    # float32 rounding: the residuals are O(1e-1 .. 1); Keras and torch sum in different orders
    assert float((plain - want).abs().max()) < 1e-6
    assert float((fused - want).abs().max()) < 1e-6


@pytest.mark.parametrize("convention", ["raw", "normalized"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_kernel_equals_the_plain_module(convention, threads):
    net = _random_net(convention)
    seq = torch.randn(10_001, 5) * 0.1  # not a multiple of the chunk
    with torch.no_grad():
        want = net.double()(seq.double()).float()
    got = net.float().fused()(seq, chunk=1024, threads=threads)
    assert torch.allclose(got, want, atol=2e-6, rtol=1e-5)


def test_normalized_convention_is_shift_invariant_and_scales_the_residual():
    net = _random_net("normalized").double()
    seq = torch.randn(64, 5, dtype=torch.float64) * 0.05
    with torch.no_grad():
        base = net(seq)
        shifted = net(seq + 3.0)
        scaled = net(seq * 10.0)  # range grows 10x; the 1e-5 guard makes it approximate
    assert torch.allclose(shifted, base, atol=1e-12)
    assert torch.allclose(scaled, 10.0 * base, rtol=1e-3, atol=1e-9)


def _write_keras_h5(net: KNOWNNet, path):
    """Write ``net`` the way Keras' save_weights lays it out (kernels stored (in, out))."""
    names = {"head": "dense_12"}
    for s, stream in enumerate(("values", "diffs")):
        for i, role in enumerate(("inp", "gate", "add", "factor", "rate", "out")):
            names[f"{stream}.{role}"] = "dense" if s == 0 and i == 0 else f"dense_{6 * s + i}"
    with h5py.File(path, "w") as f:
        for module_name, layer in names.items():
            m = net.get_submodule(module_name)
            g = f.create_group(layer).create_group(layer)
            g["kernel:0"] = m.weight.detach().numpy().T
            g["bias:0"] = m.bias.detach().numpy()


def test_h5_loader_maps_every_keras_layer_to_its_role(tmp_path):
    net = _random_net()
    _write_keras_h5(net, tmp_path / "k.h5")
    loaded = load_keras_known(tmp_path / "k.h5")
    for (n1, p1), (n2, p2) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_h5_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightlabError, match="no such KNOWN weights file"):
        load_keras_known(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightlabError, match="not a readable HDF5"):
        load_keras_known(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("conv2d")
    with pytest.raises(WeightlabError, match="layer 'dense.*' not found"):
        load_keras_known(tmp_path / "other.h5")


def test_bad_sequence_shape_is_refused():
    with pytest.raises(WeightlabError, match=r"\(N, 5\)"):
        KNOWNNet()(torch.zeros(3, 4))
