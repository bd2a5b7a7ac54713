//! Log set-up for the binary: `RUST_LOG`-style filtering, JSON or human-readable output on stderr.
//! Human-readable output is coloured only when stderr is a terminal, so logs redirected to a file
//! or collected by a container runtime hold no ANSI escape codes.
//! It must not be called by library code paths other than the binary's start.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Whether human-readable logs should be coloured: only on a terminal, and never when `NO_COLOR`
/// is set (<https://no-color.org>).
pub fn use_ansi(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Initialises the global subscriber once. `json = true` for production (one JSON object per line).
/// `RUST_LOG` overrides `default_filter`.
pub fn init(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let ansi = use_ansi(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::use_ansi;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some("".as_ref())));
        assert!(!use_ansi(true, Some("1".as_ref())));
        assert!(!use_ansi(false, None));
    }
}
