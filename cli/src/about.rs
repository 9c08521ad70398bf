//! What the binary says about itself: `--version` with the core's enabled
//! features (so an operator can tell a build without PostgreSQL from one
//! with it), and shell completions generated from the argument definitions.

use clap::CommandFactory;
use std::sync::LazyLock;

/// `0.1.0 (features: sqlite, postgres, mysql, http)`; clap prints the name before it.
pub(crate) fn version() -> &'static str {
    static VERSION: LazyLock<String> =
        LazyLock::new(|| format!("{} (features: {})", env!("CARGO_PKG_VERSION"), callbook::FEATURES.join(", ")));
    &VERSION
}

/// The completion script for `shell`, for every command and option of `callbook`.
pub(crate) fn completions(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::Cli::command(), "callbook", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
