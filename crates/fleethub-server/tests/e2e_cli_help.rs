//! The command line's own help: completion scripts and `--help` examples.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(common::bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fleethub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_fleethub()") && bash.contains("complete -F _fleethub"),
        "{bash}"
    );
    assert!(
        bash.contains("--change-hostnames"),
        "serve's flags are completed"
    );
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef fleethub"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c fleethub"), "{fish}");
    assert!(
        fish.contains("enrollment-group"),
        "nested admin commands too"
    );
    let bad = Command::new(common::bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn serve_and_info_help_show_examples() {
    let serve = run(&["serve", "--help"]);
    assert!(serve.contains("Examples:"), "{serve}");
    assert!(
        serve.contains("fleethub serve --data-dir /var/lib/fleethub\n"),
        "{serve}"
    );
    assert!(serve.contains("--change-hostnames"), "{serve}");
    let info = run(&["info", "--help"]);
    assert!(
        info.contains("Examples:") && info.contains("fleethub info --output json"),
        "{info}"
    );
}
