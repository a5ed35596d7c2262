"""Networks (LeNet family, user-registered models) and which of their parameters get a prior."""
from __future__ import annotations

from .lenet import LeNet5, LeNet5Caffe, LeNet300100
from .registry import ModelFactory, available_models, build_model, register_model
from .selection import prunable_layers, prunable_parameters

__all__ = ["LeNet300100", "LeNet5", "LeNet5Caffe", "ModelFactory", "available_models", "build_model",
           "prunable_layers", "prunable_parameters", "register_model"]
