"""DuckDB-fronted feature store: schema, ingestion, metadata encoding, splits, image embedding."""
