"""Configuration: declared schemas, validation at the boundary, resolved paths."""

from __future__ import annotations

from htt_tmva.config.stages import (
    ApplicationConfig,
    DatasetConfig,
    TestingConfig,
    TrainingConfig,
    load_application_config,
    load_dataset_config,
    load_testing_config,
    load_training_config,
)

__all__ = [
    "ApplicationConfig",
    "DatasetConfig",
    "TestingConfig",
    "TrainingConfig",
    "load_application_config",
    "load_dataset_config",
    "load_testing_config",
    "load_training_config",
]
