"""The Open Inference Protocol (KServe v2 gRPC) beside ``inspector.v1``: the same pipeline, limits, metrics and audit,
spoken as tensors (:mod:`.tensors`), mapped to and from frames (:mod:`.convert`), served by :mod:`.servicer`."""
