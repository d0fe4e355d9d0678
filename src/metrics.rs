//! Metric families and their encoding (placeholder).
