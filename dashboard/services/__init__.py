"""Business logic shared by the web app, the API, the CLI and ingest; each function takes a Session."""
