"""Views over the per-sample score table: CSV files, plots, summaries."""
