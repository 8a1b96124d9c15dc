"""tako-backups: Tako-compatible backups of app data to S3-compatible storage."""

__version__ = "0.1.0"
