"""Quantization-aware fine-tuning: the int8 export's QDQ graph as a trainable MindSpore network."""
from .network import is_qat_checkpoint, load_qat_network, load_qat_teacher, qat_network  # noqa: F401

START_CHECKPOINT = "qat_start.ckpt"    # in the run folder: the graph spec + post-training ranges


def start_checkpoint(cfg):
    """The QAT run's start checkpoint (written by ``shufflenet train --qat`` before training)."""
    from pathlib import Path

    return Path(cfg["ckpt_save_dir"]) / START_CHECKPOINT
