"""The Litestar recommendation service."""
