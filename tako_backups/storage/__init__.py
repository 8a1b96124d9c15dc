"""Object stores: a small protocol, an S3 implementation and an in-memory one."""
