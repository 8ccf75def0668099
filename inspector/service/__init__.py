"""The inspection service: gRPC in front of the predictor, with micro-batching and hot model swaps."""
