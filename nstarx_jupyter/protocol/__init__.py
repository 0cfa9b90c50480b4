"""Wire models and codecs: V1, V2 (REST and gRPC) and product records, all to and from NumPy."""
