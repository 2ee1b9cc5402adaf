"""Framework-free core (numpy only): training-dynamics store, scores, selection, MedDEL, metrics."""

from .classification import aum, el2n, entropy, eva, forgetting_events
from .dad import DADTrajectory, dad_trajectory, dad_windows, moving_distance, stop_window
from .errors import DietError
from .meddel import MedDELResult, dedup, dedup_to_fraction, l2_normalise
from .normdel import normdel
from .scores import SCORE_DIRECTIONS, ScoreConfig, score_table
from .segmentation import error_norms, foreground_dice
from .selection import ccs, n_kept, regions, select
from .store import DynamicsStore

__all__ = [
    "DynamicsStore", "DietError",
    "DADTrajectory", "dad_trajectory", "dad_windows", "moving_distance", "stop_window",
    "eva", "el2n", "aum", "forgetting_events", "entropy",
    "foreground_dice", "error_norms",
    "select", "regions", "ccs", "n_kept",
    "normdel", "ScoreConfig", "score_table", "SCORE_DIRECTIONS",
    "MedDELResult", "l2_normalise", "dedup", "dedup_to_fraction",
]
