"""Core backup engine: snapshot, archive, crypto, pipeline. Never prints or prompts."""
