"""The Litestar recommendation service: uses the runtime and the registry only."""
