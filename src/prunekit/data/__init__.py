"""Calibration and evaluation corpora: named bundled corpora and local files, with fixed splits."""

from .corpora import CORPORA, corpus_text, validate_corpus
from .splits import SPLIT_FRACTION, calibration_windows, evaluation_windows, split_text

__all__ = ["CORPORA", "corpus_text", "validate_corpus", "SPLIT_FRACTION", "split_text",
           "calibration_windows", "evaluation_windows"]
