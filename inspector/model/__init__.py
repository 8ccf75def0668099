"""The network: backbones registry and DefectNet."""

from inspector.model.backbones import BACKBONES, Backbone, WeightsNotFoundError, get_backbone
from inspector.model.defectnet import DefectNet, DefectOutput

__all__ = ["BACKBONES", "Backbone", "DefectNet", "DefectOutput", "WeightsNotFoundError", "get_backbone"]
