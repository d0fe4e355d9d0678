//! The `tcp` probe kind (placeholder).
