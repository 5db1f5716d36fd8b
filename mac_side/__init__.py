"""The Mac side: author, validate, review, ledger, hooks, stats and export."""
