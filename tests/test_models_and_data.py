from pathlib import Path

import pytest
import torch

from weightlab.data import ModelInput, load_dataset
from weightlab.errors import WeightlabError
from weightlab.io import load_weights, save_tensors
from weightlab.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_model_is_a_clear_error():
    with pytest.raises(WeightlabError, match="unknown model 'no_such_net'"):
        create_model("no_such_net")


def test_weights_roundtrip_safetensors_and_pt(tmp_path):
    m = create_model("resnet8")
    save_tensors(tmp_path / "w.safetensors", m.state_dict())
    torch.save(m.state_dict(), tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        m2 = create_model("resnet8", weights=tmp_path / f)
        for k, v in m.state_dict().items():
            assert torch.equal(v, m2.state_dict()[k]), k


def test_truncated_weights_file_is_a_clear_error(tmp_path):
    m = create_model("resnet8")
    save_tensors(tmp_path / "w.safetensors", m.state_dict())
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightlabError, match="t.safetensors: not a readable safetensors file"):
        load_weights(tmp_path / "t.safetensors")
    (tmp_path / "t.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(WeightlabError, match="t.pt: cannot read"):
        load_weights(tmp_path / "t.pt")


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    save_tensors(tmp_path / "w.safetensors", create_model("resnet20").state_dict())
    with pytest.raises(WeightlabError, match="does not fit the model: unexpected 72 key"):
        create_model("resnet8", weights=tmp_path / "w.safetensors")


def test_digits_and_model_input_transform():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) == 1437 and len(test) == 360
    assert train.images.shape[1:] == (1, 8, 8) and set(train.labels.tolist()) == set(range(10))
    t = ModelInput((3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = t(torch.ones(2, 1, 8, 8) * 0.75)
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x, torch.ones_like(x))  # (0.75 - 0.5) / 0.25


def test_unknown_dataset_and_split():
    with pytest.raises(WeightlabError, match="unknown data set"):
        load_dataset("imagenet")
    with pytest.raises(WeightlabError, match="unknown split"):
        load_dataset("digits", "val")


def test_shared_mnist_idx(shared):
    ds = load_dataset("mnist", "test", shared / "data")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist()[:2] == [980, 1135]


@pytest.mark.parametrize("name", ["resnet20", "convmixer256_d8_k9_p4"])
def test_shared_pretrained_models_load_exactly(shared, name):
    from weightlab.io import load_weights as lw

    m = create_model(name, pretrained=True)
    ref = lw(shared / "models" / "cifar10" / f"{name}.safetensors")
    sd = m.state_dict()
    for k, v in ref.items():
        assert torch.equal(sd[k], v), k
    with torch.no_grad():
        assert m.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_mlp_sizes_its_first_layer_from_input_size_and_rebuilds_from_its_config():
    import torch

    from weightlab.models import create_model, rebuild_model

    m = create_model("mlp", num_classes=5, input_size=(1, 16, 16), hidden=(32,))
    assert m.features[1].in_features == 256 and m.head.out_features == 5
    assert m(torch.zeros(2, 1, 16, 16)).shape == (2, 5)
    again = rebuild_model(m.weightlab_cfg)
    assert [tuple(p.shape) for p in again.parameters()] == [tuple(p.shape) for p in m.parameters()]


def test_device_data_copy_is_read_by_the_same_loaders(tmp_path):
    """scripts/device_data.py: the first N images of an idx set, rewritten with the new count."""
    import importlib.util
    import struct

    import numpy as np

    spec = importlib.util.spec_from_file_location("device_data", ROOT / "scripts" / "device_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw = tmp_path / "src" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(6 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(6, 28, 28)
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 6, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 6) + labels.tobytes())
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            mod.idx_head(raw / f"{prefix}-{kind}", tmp_path / "out" / "MNIST" / "raw" / f"{prefix}-{kind}", 4)
    small = load_dataset("mnist", "train", tmp_path / "out")
    assert len(small) == 4 and small.labels.tolist() == [3, 1, 4, 1]
    assert torch.equal(small.images[:, 0], torch.from_numpy(images[:4]))
