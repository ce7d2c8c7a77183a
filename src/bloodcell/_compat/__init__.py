"""Work-arounds for third-party packages, each in one place."""
