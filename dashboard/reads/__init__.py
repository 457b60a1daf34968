"""The one read layer: every query of the pages, the API, the CSV export and the live streams, on read-only sessions."""
