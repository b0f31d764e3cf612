"""The entry points: build_app (the composition root), the CLI, doctor, the Teams app package, metrics."""
