"""The local model server: model repository, data plane and its REST and gRPC transports."""
