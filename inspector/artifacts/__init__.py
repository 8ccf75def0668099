"""What training leaves on disk: bundles, their seal, the model store, exports."""
