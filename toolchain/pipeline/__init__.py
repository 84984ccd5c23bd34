"""The train -> export -> parity -> latency pipeline, its run record and reports."""
from .record import RunRecord, diff_records
from .run_options import STAGES, PipelineOptions
from .stages import run_pipeline

__all__ = ["STAGES", "PipelineOptions", "RunRecord", "diff_records", "run_pipeline"]
