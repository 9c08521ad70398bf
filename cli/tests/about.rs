//! `callbook --version` names the version and the core's features;
//! `callbook completions SHELL` prints a script that shell loads.

use std::process::{Command, Output};

fn callbook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callbook")).args(args).output().expect("run callbook")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[test]
fn version_lists_the_features_this_build_has() {
    let out = callbook(&["--version"]);
    assert!(out.status.success());
    // The CLI enables postgres and mysql on core; sqlite and http are core's defaults.
    let expected = format!("callbook {} (features: sqlite, postgres, mysql, http)\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&out), expected);
    assert_eq!(stdout(&callbook(&["-V"])), expected);
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_commands() {
    for (shell, marker) in
        [("bash", "complete -F _callbook"), ("zsh", "#compdef callbook"), ("fish", "complete -c callbook")]
    {
        let out = callbook(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["book", "review", "serve", "calcom-url", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
}

#[test]
fn an_unknown_shell_is_bad_usage() {
    let out = callbook(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_bash_script_loads_in_bash() {
    let out = callbook(&["completions", "bash"]);
    let script = std::env::temp_dir().join(format!("callbook-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &out.stdout).expect("write script");
    // Sourcing defines the function and registers it for `callbook`.
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p callbook", script.display()))
        .output()
        .expect("run bash");
    let _ = std::fs::remove_file(&script);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("_callbook"));
}
