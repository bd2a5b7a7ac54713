//! Log set-up for the binary: `RUST_LOG`-style filtering, JSON or human-readable output.
//! It must not be called by library code paths other than the binary's start.

use tracing_subscriber::EnvFilter;

/// Initialises the global subscriber once. `json = true` for production (one JSON object per line).
/// `RUST_LOG` overrides `default_filter`.
pub fn init(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
