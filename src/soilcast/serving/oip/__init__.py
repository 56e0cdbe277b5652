"""The Open Inference Protocol (KServe v2, also Triton's) over REST and gRPC, on the gateway's data plane."""
