"""Pickled checkpoints from outside: plain state dicts load safely, anything needing code is
refused unless allowed, and conversion leaves a safetensors file (lare2lib.models.unsafe)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lare2lib.models.unsafe import (
    UnsafeCheckpointError,
    UnsafePickleWarning,
    convert_pickled_detector,
    load_pickled_detector,
)


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))


class _Payload:
    """What a malicious pickle does: run a function at load time (here: create a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_plain_state_dict_loads_without_opt_in(tmp_path):
    """The released LaRE checkpoints hold {"model": state_dict, ...}, DataParallel-prefixed."""
    module = _module()
    nested = {"model": {f"module.{k}": v for k, v in module.state_dict().items()}, "epoch": 3}
    torch.save(nested, tmp_path / "released.pth")
    state = load_pickled_detector(tmp_path / "released.pth")
    assert state.keys() == module.state_dict().keys()
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    fresh.load_state_dict(state, strict=True)
    out = convert_pickled_detector(tmp_path / "released.pth", tmp_path / "converted.safetensors")
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["loaded_with"] == "weights_only" and metadata["source"] == "released.pth"
    assert len(metadata["source_sha256"]) == 64
    for name, value in load_file(str(out)).items():
        torch.testing.assert_close(value, module.state_dict()[name], rtol=0, atol=0)


def test_whole_pickled_module_is_refused_then_converted_when_allowed(tmp_path):
    """Vesnin et al. release whole modules: they need the full unpickler."""
    module = _module()
    torch.save(module, tmp_path / "whole.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"executes code.*allow_pickle=True"):
        load_pickled_detector(tmp_path / "whole.pth")
    with pytest.warns(UnsafePickleWarning, match="full unpickler"):
        out = convert_pickled_detector(tmp_path / "whole.pth", tmp_path / "whole.safetensors",
                                       allow_pickle=True)
    with safe_open(str(out), framework="pt") as handle:
        assert handle.metadata()["loaded_with"] == "pickle"
    assert sorted(load_file(str(out))) == sorted(module.state_dict())


def test_malicious_pickle_never_runs_by_default(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"model": _Payload(marker)}, handle, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="Refused"):
        load_pickled_detector(tmp_path / "evil.pth")
    assert not marker.exists()


def test_no_state_dict_and_missing_file(tmp_path):
    torch.save({"epoch": 3, "notes": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(UnsafeCheckpointError, match="no state dict found"):
        load_pickled_detector(tmp_path / "empty.pth")
    with pytest.raises(FileNotFoundError):
        load_pickled_detector(tmp_path / "absent.pth")


UNSAFE_CALLS = re.compile(
    r"torch\.save\(|pickle\.(?:load|dump)|joblib\.|\.to_pickle\(|read_pickle\(|np\.save\(|"
    r"allow_pickle\s*=\s*True|torch\.load\((?!.*weights_only=True)")
"""Ways to write or read a pickle; the only place allowed to is lare2lib/models/unsafe.py."""


def test_the_project_writes_and_reads_no_pickles():
    """Everything the project writes is safetensors / JSON / CSV / parquet, and every
    torch.load outside lare2lib.models.unsafe is the restricted ``weights_only=True`` one."""
    root = Path(__file__).resolve().parents[1]
    sources = [*sorted((root / "lare2lib").rglob("*.py")), *sorted((root / "notebooks").glob("*.py")),
               *sorted((root / "bench").glob("*.py"))]
    offending = [f"{path.relative_to(root)}:{number}: {line.strip()}"
                 for path in sources if path.name != "unsafe.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if UNSAFE_CALLS.search(line) and not line.lstrip().startswith("#")]
    assert not offending, "\n".join(offending)
    assert UNSAFE_CALLS.search("torch.load(path, map_location='cpu')")
    assert not UNSAFE_CALLS.search("torch.load(path, map_location='cpu', weights_only=True)")
