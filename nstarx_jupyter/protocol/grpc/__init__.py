"""V2 gRPC wire format: `inference.proto` and the stubs generated from it at build time."""
