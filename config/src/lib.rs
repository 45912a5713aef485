//! ferromq configuration (placeholder until the config crate lands).
