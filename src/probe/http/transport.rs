//! HTTP/1.1 transport with phase timings (placeholder).
