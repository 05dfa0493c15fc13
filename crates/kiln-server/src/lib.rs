//! Tracking server: MLflow REST API and artifact proxy.
