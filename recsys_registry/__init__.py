"""The model registry (champion / challenger aliases and history), shared by pipeline and service."""
