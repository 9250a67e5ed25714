from __future__ import annotations

import pickle

import pytest
import torch

from dfmm.errors import CheckpointError
from dfmm.models.checkpoints import load_checkpoint, save_checkpoint


def test_round_trip_tensors_only(tmp_path):
    p = save_checkpoint(tmp_path / "v.pt", "visual_branch", {"w": torch.ones(2)}, {"a": 1})
    kind, state, meta = load_checkpoint(p)
    assert kind == "visual_branch" and torch.equal(state["w"], torch.ones(2)) and meta == {"a": 1}
    assert not (tmp_path / "v.pt.tmp").exists()


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "dfmm", "version": 1, "kind": "visual_branch", "meta": "{}", "state": {}, "x": Evil()}, p)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pt"):
        load_checkpoint(p)
    q = tmp_path / "plain.pkl"
    q.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(q)


def test_foreign_truncated_and_wrong_kind(tmp_path):
    torch.save({"weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dfmm checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    good = save_checkpoint(tmp_path / "t.pt", "text_branch", {"w": torch.ones(1)}, {})
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="expected visual_branch"):
        load_checkpoint(good, ("visual_branch",))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
