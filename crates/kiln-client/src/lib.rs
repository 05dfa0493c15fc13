//! HTTP client for a kiln or MLflow tracking server.
