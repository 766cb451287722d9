"""What a task-incremental suite fixes (RECAST paper Tables 1, 2, Fig. 3): the backbone, the task
sequence, its rows (methods, or budget points: a method on a RECAST base with its own settings), seeds,
split sizes, the epoch budget, and the fair protocol's grids (rates chosen on validation, see
:mod:`weightlab.incremental.selection`). The suites themselves are data (:mod:`weightlab.bench.suites`);
their runner is :mod:`weightlab.bench.incremental`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from weightlab.data.tasks import SplitSizes
from weightlab.engine.options import SEEDS
from weightlab.errors import WeightlabError
from weightlab.incremental.learner import AdaptConfig


@dataclass
class Point:
    """One configuration of a budget suite: a method on a RECAST base built with ``recast`` overrides."""

    label: str
    method: str
    recast: dict = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    model: str
    sequence: str
    methods: list[str] = field(default_factory=list)
    seeds: tuple[int, ...] = SEEDS
    sizes: SplitSizes = field(default_factory=SplitSizes)
    epochs: int = 4
    weights: str | None = None  # local weights instead of the registry's pretrained ones
    recast: dict = field(default_factory=lambda: dict(templates="auto", layers_per_group=2))
    points: list[Point] = field(default_factory=list)  # budget suites
    bn: str = "task"
    pretrained: bool = True  # False: random init (smoke tests without the shared models)
    model_kwargs: dict = field(default_factory=dict)  # e.g. a timm ViT's img_size / patch_size / depth
    description: str = ""
    # paper scale: read the tasks from disk (dict(workers=, size=, augment=), see weightlab.data.streaming);
    # "{data}" in the sequence is the data root; needs_weights: the weights file is an argument
    stream: dict | None = None
    needs_weights: bool = False
    # the fair protocol (issue 17): each per-task row's learning rate is chosen on validation from
    # ``lr_grid`` on the first seed; then, for rows with RECAST coefficients, the coefficients' rate from
    # ``coef_lr_grid`` at that rate; both are then fixed for every seed (the first seed's run at the chosen
    # rates is its result). Empty grid: the authors' lr 2e-3. Continual-learning baselines keep their recipes.
    lr_grid: tuple[float, ...] = ()
    coef_lr_grid: tuple[float, ...] = ()
    # StepLR(x0.1) step in epochs: 33 is the authors' (of 100 epochs); None scales it to a third of ``epochs``
    lr_step: int | None = 33
    # (row, reference row): the paired per-seed difference reported under the table (RECAST - head ...)
    contrasts: list[tuple] = field(default_factory=list)
    budget: bool | None = None  # the budget figure instead of the paper's table (None: when points are given)
    # the same suite at full size (``--scale full``): field overrides, e.g. whole data sets and 100 epochs
    full: dict = field(default_factory=dict)
    # -- the v3 protocol (issue 36) --
    # each seed draws its own training / validation / test images (``data_seed`` = the seed; the rates are
    # chosen on the first seed's split); False: one split (data seed 0) for every seed
    data_seeds: bool = False
    # where the validation images come from: "train" (a part of each task's training split) or "test" (a
    # seeded part of its test split, the test read on the rest: images a backbone pretrained on the task's
    # training split never saw)
    val_from: str = "train"
    # how many times a row's grid is extended past an edge that scored best (one grid step each)
    grid_extensions: int = 2
    # after the coefficients' rate, choose the row's own rate (the head's, and BatchNorm's) again at it: the
    # head is then tuned for the coefficients' rate, not only for the first pass's shared rate
    head_search: bool = False
    # rows whose own rate (the head's) is taken from another row's chosen lr (e.g. head-only's), only their
    # coefficients' rate searched: {row label: row it takes the rate from}
    shared_lr: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.val_from not in ("train", "test"):
            raise WeightlabError(f"val_from must be 'train' or 'test', got {self.val_from!r}")
        if self.grid_extensions < 0:
            raise WeightlabError(f"grid_extensions must be >= 0, got {self.grid_extensions}")

    def at_scale(self, scale: str = "cpu") -> Suite:
        """The suite as defined (``cpu``) or at its full size (``full``: ``self.full`` applied)."""
        if scale == "cpu":
            return self
        if scale != "full":
            raise WeightlabError(f"unknown suite scale '{scale}' (cpu or full)")
        if not self.full:
            raise WeightlabError(f"suite '{self.name}' has no full-size definition (only --scale cpu)")
        return replace(self, **self.full)

    def row_recast(self, overrides: dict) -> dict:
        """A row's RECAST settings: the suite's, with the row's overrides on top."""
        return {**self.recast, **overrides}

    def adapt_config(
        self, device: str | None = None, precision: str = "fp32", lr: float | None = None, coef_lr: float | None = None
    ) -> AdaptConfig:
        """The authors' recipe truncated to ``epochs`` (with the default ``lr_step`` its first 33 epochs
        run at the full rate, so a budget of a few epochs never reaches the first decay), at ``lr`` /
        ``coef_lr`` when given. Runs on ``device`` (default CPU)."""
        rates = dict(lr=lr) if lr is not None else {}
        return AdaptConfig(
            epochs=self.epochs,
            lr_step=self.lr_step,
            coef_lr=coef_lr,
            device=device or "cpu",
            precision=precision,
            **rates,
        )

    @property
    def is_budget(self) -> bool:
        return bool(self.points) if self.budget is None else self.budget

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = asdict(self.sizes)
        return d
