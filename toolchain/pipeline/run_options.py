"""What a pipeline run is asked to do: its options, its stage names, what they resolve to.

Below both the stages and the preflight checks (each reads the options; the
stages run the checks first).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from exporters.formats import FORMATS, require_modules
from shufflenet.train.launch import spec_from_options

STAGES = ("train", "validate", "export", "qat", "parity", "bench")
QAT_MODES = ("auto", "always", "off")
DEFAULT_RECIPE = "demo"


@dataclass
class PipelineOptions:
    recipe: str = DEFAULT_RECIPE
    overrides: dict = field(default_factory=dict)     # MindCV option names
    ckpt_path: str | None = None                      # skip training, use this checkpoint
    formats: list | None = None                       # None = every installed format
    target_names: list | None = None                  # None = default targets
    targets_file: str | None = None
    run_dir: str = "runs/pipeline"
    force: tuple = ()
    parity_samples: int | None = None                 # None: the whole labelled val split
    allow_inconclusive: bool = False                  # INCONCLUSIVE parity passes its gate
    max_accuracy_drop_pp: float = 1.0                 # onnx-int8 budget, held-out train images
    int8_search_seconds: float = 300.0                # onnx-int8 search time budget
    calib_samples: int = 256                          # onnx-int8 calibration images
    min_top1_pct: float | None = None                 # accuracy gate in percent, optional
    bench_seconds: float = 2.0                        # time budget per target
    progress: bool = True
    command: list = field(default_factory=list)
    devices: int | None = None                        # data-parallel ranks here (None: recipe)
    nodes: int = 1                                    # machines; each runs the same command
    node_rank: int = 0                                # only node 0 continues past training
    master: str | None = None                         # node 0's ADDR[:PORT] for nodes > 1
    # quantization-aware fine-tuning for onnx-int8 (toolchain/pipeline/qat_stage.py): "auto"
    # runs it only when post-training int8 misses --max-accuracy-drop (QAT is a training run,
    # and where post-training int8 passes it lost accuracy: docs/qat.md)
    qat: str = "auto"
    qat_minutes: float | None = None                  # QAT time budget (stops after an epoch)
    qat_overrides: dict = field(default_factory=dict)  # MindCV option names, for QAT only


def launch_spec(opts: PipelineOptions):
    """The options' :class:`~shufflenet.train.launch.LaunchSpec` (None: the recipe decides)."""
    return spec_from_options(opts.devices, opts.nodes, opts.node_rank, opts.master)



def installed_formats() -> list[str]:
    """Every export format whose engine is installed here."""
    out = []
    for name, spec in FORMATS.items():
        try:
            require_modules(spec)
        except Exception:
            continue
        out.append(name)
    return out
