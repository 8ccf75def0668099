"""Evaluation of the classifier and the segmentation mask: metrics and plots."""
