"""The Windows side: the worker that reconciles batches into renders."""
