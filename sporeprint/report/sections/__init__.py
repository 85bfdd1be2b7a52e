"""One module per report section; each has ``section(...) -> Section`` built from the store's
report queries (``store.reports``) and the scoring package."""
