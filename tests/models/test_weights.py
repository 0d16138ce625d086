"""Weights: local files in every accepted format, clear errors, and ImageNet offline behaviour."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from dermascan.models import (
    WeightsFileError,
    WeightsUnavailableError,
    create_model,
    resolve_weights,
    timm_models,
    weights,
)
from dermascan.taxonomy import NUM_CLASSES


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (TORCH_HOME is read by torch.hub.get_dir() on every call)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub"


def _assert_same_params(a: nn.Module, b: nn.Module, skip: str = "\0") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if not k.startswith(skip)]
    assert keys and all(torch.equal(sa[k], sb[k]) for k in keys)


# ----------------------------------------------------------------------------------------- local files


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny"])
def test_full_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = create_model(name)
    path = tmp_path / "model.pth"
    torch.save(src.state_dict(), path)
    loaded = create_model(name, weights=path)
    _assert_same_params(src, loaded)


def test_imagenet_format_file_loads_into_the_backbone(tmp_path: Path) -> None:
    imagenet = torchvision.models.resnet18()  # the 1000-class file a clinic would download
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(imagenet.state_dict(), path)
    model = create_model("resnet18", weights=str(path))
    assert model.fc.out_features == NUM_CLASSES and model.fc.in_features == 512
    _assert_same_params(imagenet, model, skip="fc.")


def test_other_head_size_is_replaced(tmp_path: Path) -> None:
    src = create_model("resnet18")
    path = tmp_path / "seven.pth"
    torch.save(src.state_dict(), path)
    model = create_model("resnet18", num_classes=3, weights=path)
    assert model.fc.out_features == 3
    _assert_same_params(src, model, skip="fc.")


def test_headless_backbone_file(tmp_path: Path) -> None:
    src = create_model("resnet18")
    path = tmp_path / "backbone.pth"
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}, path)
    model = create_model("resnet18", weights=path)
    assert model.fc.out_features == NUM_CLASSES
    _assert_same_params(src, model, skip="fc.")


def test_lightning_checkpoint(tmp_path: Path) -> None:
    src = create_model("vit_tiny")
    state = {f"model.{k}": v for k, v in src.state_dict().items()}
    state["loss_fn.pos_weight"] = torch.ones(1)  # other parts of a LightningModule are ignored
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "global_step": 10, "state_dict": state}, path)
    _assert_same_params(src, create_model("vit_tiny", weights=path))


def test_ddp_prefix_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = create_model("resnet18")
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, ddp)
    _assert_same_params(src, create_model("resnet18", weights=ddp))
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(st))
    _assert_same_params(src, create_model("resnet18", weights=st))


def test_vit_position_embedding_is_resized(tmp_path: Path) -> None:
    src = create_model("vit_tiny", image_size=64)  # 8 x 8 grid
    path = tmp_path / "vit64.pth"
    torch.save(src.state_dict(), path)
    model = create_model("vit_tiny", image_size=32, weights=path)  # 4 x 4 grid
    assert model.encoder.pos_embedding.shape == (1, 17, 192)
    assert torch.equal(model.encoder.pos_embedding[:, 0], src.encoder.pos_embedding[:, 0])  # class token
    _assert_same_params(src, model, skip="encoder.pos_embedding")


def test_timm_state_dict_round_trip(tmp_path: Path) -> None:
    src = create_model("timm:resnet18")
    path = tmp_path / "timm.pth"
    torch.save(src.state_dict(), path)
    _assert_same_params(src, create_model("timm:resnet18", weights=path))


def test_corrupt_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsFileError, match=r"weights_only=True.*\n.*state dict"):
        create_model("resnet18", weights=path)


class _Custom:
    pass


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pth"
    torch.save({"state_dict": _Custom()}, path)  # needs full unpickling: refused, never retried unsafely
    with pytest.raises(WeightsFileError, match="never unpickles"):
        create_model("resnet18", weights=path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsFileError, match="not a state dict"):
        create_model("resnet18", weights=path)
    path2 = tmp_path / "mixed.pth"
    torch.save({"epoch": 3, "conv1.weight": torch.zeros(1)}, path2)
    with pytest.raises(WeightsFileError, match="'epoch' holds a int"):
        create_model("resnet18", weights=path2)


def test_wrong_architecture_names_keys_and_arch(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save(create_model("resnet18").state_dict(), path)
    with pytest.raises(WeightsFileError, match=r"do not fit vit_tiny: \d+ missing keys \(.*class_token"):
        create_model("vit_tiny", weights=path)
    partial = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("layer4")}
    torch.save(partial, path)
    with pytest.raises(WeightsFileError, match="missing keys.*layer4"):
        create_model("resnet18", weights=path)


def test_missing_file_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"'none'.*'imagenet'"):
        create_model("resnet18", weights=tmp_path / "nope.pth")
    with pytest.raises(TypeError):
        resolve_weights(True)  # type: ignore[arg-type]
    assert resolve_weights(None) == "none" and resolve_weights("ImageNet") == "imagenet"


# -------------------------------------------------------------------------------------------- ImageNet


def test_imagenet_from_the_hub_cache(hub_dir: Path) -> None:
    """The real torchvision path reads a file already in the hub cache (no network involved)."""
    imagenet = torchvision.models.resnet18()
    cached = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cached)
    model = create_model("resnet18", weights="imagenet")
    assert model.fc.out_features == NUM_CLASSES
    _assert_same_params(imagenet, model, skip="fc.")


def test_imagenet_offline_fails_fast_with_the_fix(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, no download is even attempted (the time it takes: benchmarks/bench_offline.py)."""
    monkeypatch.setattr(weights, "host_reachable", lambda host, **kw: False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **kw: pytest.fail("download attempted"))
    with pytest.raises(WeightsUnavailableError) as err:
        create_model("resnet50", weights="imagenet")
    assert not (hub_dir / "checkpoints" / "resnet50-11ad3fa6.pth").exists()
    msg = str(err.value)
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in msg
    assert str(hub_dir / "checkpoints" / "resnet50-11ad3fa6.pth") in msg
    assert "--weights PATH" in msg and "--weights none" in msg


def test_imagenet_download_error_is_wrapped(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe passes but the download itself fails (proxy, DNS, reset): same clear error."""

    def refuse(url: str, dst: str, *args, **kwargs) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(weights, "host_reachable", lambda host, **kw: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(WeightsUnavailableError, match=r"(?s)URLError.*vit_b_16-c867db91\.pth") as err:
        create_model("vit_b_16", weights="imagenet")
    assert "--weights none" in str(err.value)
    assert isinstance(err.value.__cause__, URLError)


def test_damaged_cache_file(hub_dir: Path) -> None:
    cached = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    with pytest.raises(WeightsUnavailableError, match="delete it and retry"):
        create_model("resnet18", weights="imagenet")


def test_real_offline_probe_says_unreachable_with_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe on an unroutable address answers False, and passes its timeout to the socket (so it cannot hang).

    How long it takes is a figure, printed by benchmarks/bench_offline.py.
    """
    import socket

    timeouts = []
    real = socket.create_connection

    def spy(address, timeout=None, *args, **kwargs):
        timeouts.append(timeout)
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    assert weights.host_reachable("192.0.2.1", timeout=0.5) is False  # TEST-NET-1: never routed
    assert timeouts == [0.5]


def test_vit_tiny_has_no_imagenet_weights() -> None:
    with pytest.raises(ValueError, match=r"vit_tiny has no ImageNet weights.*resnet50"):
        create_model("vit_tiny", weights="imagenet")


def test_timm_imagenet_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "host_reachable", lambda host, **kw: False)
    monkeypatch.setattr(timm_models, "_cached_pretrained_file", lambda cfg: None)
    with pytest.raises(WeightsUnavailableError, match=r"(?s)timm:resnet18.*--weights PATH") as err:
        create_model("timm:resnet18", weights="imagenet")
    assert "--weights none" in str(err.value) and "huggingface" in str(err.value)


def test_timm_imagenet_from_a_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached pretrained file is loaded through timm's own pretrained path, without the network."""
    src = create_model("timm:resnet18", num_classes=1000)
    cached = tmp_path / "model.pth"
    torch.save(src.state_dict(), cached)
    monkeypatch.setattr(timm_models, "_cached_pretrained_file", lambda cfg: cached)
    monkeypatch.setattr(weights, "host_reachable", lambda host, **kw: pytest.fail("network probed"))
    model = create_model("timm:resnet18", weights="imagenet")
    assert model.fc.out_features == NUM_CLASSES
    _assert_same_params(src, model, skip="fc.")
