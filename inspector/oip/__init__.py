"""The Open Inference Protocol (KServe v2 gRPC) messages and stubs, generated from protos/inspector/oip/."""
