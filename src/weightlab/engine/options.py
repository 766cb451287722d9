"""The engine's option names (torch-free: the CLI lists them in ``--help`` without importing torch)."""

OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (CUDA, then MPS, then CPU)"

# the seeds both papers' authors report over (RECAST and KNOW suites default to them)
SEEDS = (42, 1998, 3142592)
