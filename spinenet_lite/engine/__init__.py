"""Training and inference loops, checkpoints and the registry of shipped weights."""

from __future__ import annotations

from .checkpoint import (  # noqa: I001
    export_weights,
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .evaluation import (  # noqa: I001
    EvalResult,
    evaluate,
    paper_reference,
    predict,
    predict_labels,
    run_model,
)
from .training import (  # noqa: I001
    TrainResult,
    build_model,
    class_recalls,
    evaluate_loss_accuracy,
    input_mean,
    predict_logits,
    train,
)
from .weights import (  # noqa: I001
    DEFAULT_GRADER,
    DEFAULT_LOCALISER,
    ONE_SLICE_GRADER,
    REAL_GRADER,
    REGISTRY,
    ResolvedWeights,
    WeightsEntry,
    load_grader,
    load_localiser,
    resolve_weights,
    sha256_file,
    verify_weights,
    weights_dir,
)

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "load_model",
    "export_weights",
    "TrainResult",
    "build_model",
    "class_recalls",
    "evaluate_loss_accuracy",
    "input_mean",
    "predict_logits",
    "train",
    "EvalResult",
    "evaluate",
    "predict",
    "run_model",
    "predict_labels",
    "paper_reference",
    "DEFAULT_GRADER",
    "DEFAULT_LOCALISER",
    "ONE_SLICE_GRADER",
    "REAL_GRADER",
    "REGISTRY",
    "ResolvedWeights",
    "WeightsEntry",
    "load_grader",
    "load_localiser",
    "resolve_weights",
    "sha256_file",
    "verify_weights",
    "weights_dir",
]
