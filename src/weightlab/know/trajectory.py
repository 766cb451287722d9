"""A weight trajectory ``[Θ⁰, Θ¹, …, Θ^{S-1}]`` of progressive forgetting, and its storage.

On disk a trajectory is a folder: ``manifest.json`` plus one ``stage_NN.safetensors`` per stage
(``stage_00`` is Θ⁰, the model trained on all of D⁰; ``stage_s`` the model after fine-tuning on
D^s). Every file is written atomically and the manifest is rewritten after each stage, so a folder
always describes exactly the stages that are complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from weightlab.errors import WeightlabError
from weightlab.io import file_sha256, load_weights, read_json, save_tensors, write_json
from weightlab.know.kinds import KINDS, guess_kinds

MANIFEST = "manifest.json"
FORMAT = "weightlab.know.trajectory/1"


def stage_file(index: int) -> str:
    return f"stage_{index:02d}.safetensors"


def scale_label(ratio: float, step: int) -> str:
    """How much more data step ``k`` stands for: ``x2, x4, x8`` for r = 0.5, ``x3, x9`` for r = 1/3."""
    return f"x{round((1.0 / ratio) ** step)}"


@dataclass
class Trajectory:
    """``stages[s]`` is Θ^s (``s = 0``: full data, larger ``s``: smaller subsets); ``kinds`` maps
    every key to its kind (see :mod:`weightlab.know.kinds`); ``meta`` is the manifest's record."""

    stages: list[dict[str, torch.Tensor]]
    kinds: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages:
            raise WeightlabError("a trajectory needs at least one stage")
        if not self.kinds:
            self.kinds = guess_kinds(self.stages[0])
        self.validate()

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def keys(self) -> list[str]:
        return list(self.stages[0])

    def validate(self) -> None:
        """Same keys and shapes in every stage, finite values, a kind for every key."""
        ref = self.stages[0]
        for s, stage in enumerate(self.stages[1:], start=1):
            missing = [k for k in ref if k not in stage]
            extra = [k for k in stage if k not in ref]
            if missing or extra:
                raise WeightlabError(
                    f"trajectory stage {s} has different keys from stage 0: "
                    + "; ".join(
                        p
                        for p in (
                            f"missing {', '.join(missing[:3])}" if missing else "",
                            f"unexpected {', '.join(extra[:3])}" if extra else "",
                        )
                        if p
                    )
                )
            bad = [
                f"{k} {tuple(stage[k].shape)} vs {tuple(ref[k].shape)}"
                for k in ref
                if tuple(stage[k].shape) != tuple(ref[k].shape)
            ]
            if bad:
                raise WeightlabError(f"trajectory stage {s} has different shapes from stage 0: {'; '.join(bad[:3])}")
        for s, stage in enumerate(self.stages):
            for k, v in stage.items():
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise WeightlabError(f"trajectory stage {s}: '{k}' contains NaN or Inf values")
        unknown = [k for k in ref if k not in self.kinds]
        if unknown:
            raise WeightlabError(f"trajectory has no kind for {len(unknown)} key(s) e.g. {', '.join(unknown[:3])}")
        odd = sorted({str(v) for v in self.kinds.values() if v not in KINDS})
        if odd:
            raise WeightlabError(f"trajectory kinds {odd[:3]} are not kinds ({', '.join(KINDS)})")
        for s, stage in enumerate(self.stages[1:], start=1):
            bad = [f"{k} {stage[k].dtype} vs {ref[k].dtype}" for k in ref if stage[k].dtype != ref[k].dtype]
            if bad:
                raise WeightlabError(f"trajectory stage {s} has different dtypes from stage 0: {'; '.join(bad[:3])}")
        ints = [
            k for k in ref if self.kinds[k] in ("conv", "fc", "bias", "norm", "head") and not ref[k].is_floating_point()
        ]
        if ints:
            raise WeightlabError(
                f"trajectory weights are not floating-point: {len(ints)} key(s) e.g. {ints[0]} {ref[ints[0]].dtype}"
            )

    def require(self, n: int, who: str) -> None:
        if self.num_stages < n:
            raise WeightlabError(f"{who} needs a trajectory of at least {n} stages, this one has {self.num_stages}")

    def keys_of(self, kinds) -> list[str]:
        """Keys of the given kinds that hold floating-point values (in state-dict order)."""
        return [k for k in self.keys if self.kinds[k] in kinds and self.stages[0][k].is_floating_point()]

    def count_by_kind(self, keys: list[str] | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for k in keys if keys is not None else self.keys:
            counts[self.kinds[k]] = counts.get(self.kinds[k], 0) + self.stages[0][k].numel()
        return counts

    # ------------------------------------------------------------------ storage
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        for s, stage in enumerate(self.stages):
            save_tensors(folder / stage_file(s), stage)
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            kinds=self.kinds,
            completed_stages=self.num_stages,
            stage_files=[stage_file(s) for s in range(self.num_stages)],
            stage_sha256=[file_sha256(folder / stage_file(s)) for s in range(self.num_stages)],
        )
        write_json(folder / MANIFEST, meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, min_stages: int = 1) -> Trajectory:
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise WeightlabError(
                f"{folder}: not a trajectory folder (no {MANIFEST}); make one with 'weightlab know forget'"
            )
        meta = read_json(folder / MANIFEST)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise WeightlabError(f"{folder / MANIFEST}: unknown format {found!r} (expected {FORMAT})")
        files, done = meta.get("stage_files", []), meta.get("completed_stages", 0)
        if (
            not isinstance(files, list)
            or not all(isinstance(f, str) and f for f in files)
            or not isinstance(done, int)
            or isinstance(done, bool)
            or not 0 <= done <= len(files)
            or not isinstance(meta.get("kinds", {}), dict)
        ):
            raise WeightlabError(
                f"{folder / MANIFEST}: damaged manifest (stage_files must be a list of file names, completed_stages "
                "a count of them, kinds a mapping)"
            )
        files = files[:done]
        if len(files) < min_stages:
            raise WeightlabError(f"{folder}: {len(files)} complete stage(s), at least {min_stages} needed")
        outside = [f for f in files if Path(f).name != f or f in (".", "..")]
        if outside:
            raise WeightlabError(f"{folder / MANIFEST}: stage file '{outside[0]}' is not a file name in the folder")
        hashes = meta.get("stage_sha256")  # trajectories written before issue 37 have none
        if hashes is not None and (not isinstance(hashes, list) or len(hashes) < len(files)):
            raise WeightlabError(f"{folder / MANIFEST}: damaged manifest (stage_sha256 must list every stage's hash)")
        _check_config(folder, meta.get("config"))
        stages = []
        for i, f in enumerate(files):
            if not (folder / f).is_file():
                raise WeightlabError(f"{folder / f}: stage file listed in the manifest is missing")
            if hashes is not None and file_sha256(folder / f) != hashes[i]:
                raise WeightlabError(
                    f"{folder / f}: not the stage the manifest recorded (sha256 differs: replaced or edited)"
                )
            stages.append(load_weights(folder / f))
        return cls(stages, dict(meta.get("kinds", {})), meta)


def _check_config(folder: Path, config) -> None:
    """The forgetting options a manifest records (read for labels and steps): a mapping with a ratio in
    (0, 1) and a whole number of stages >= 2, when present."""
    import math

    if config is None:
        return
    where = folder / MANIFEST
    if not isinstance(config, dict):
        raise WeightlabError(f"{where}: damaged manifest (config must be a mapping, got {type(config).__name__})")
    ratio = config.get("ratio", 0.5)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or not 0 < ratio < 1:
        raise WeightlabError(f"{where}: damaged manifest (config.ratio must be a number in (0, 1), got {ratio!r})")
    stages = config.get("stages", 2)
    if isinstance(stages, bool) or not isinstance(stages, int) or stages < 2:
        raise WeightlabError(f"{where}: damaged manifest (config.stages must be a whole number >= 2, got {stages!r})")
