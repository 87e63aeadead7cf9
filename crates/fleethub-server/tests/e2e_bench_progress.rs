//! Long-running commands show progress: plain `LABEL: DONE/TOTAL` lines on stderr when it is
//! not a terminal (a bar otherwise), the result alone on stdout.

mod common;

use common::ServerProcess;

#[test]
fn bench_register_prints_progress_lines_off_a_terminal() {
    let s = ServerProcess::start();
    let (ok, out, err) = s.cli(&[
        "bench",
        "register",
        "--count",
        "4",
        "--concurrency",
        "2",
        "-o",
        "json",
    ]);
    assert!(ok, "{err}\n{out}");
    assert!(err.contains("registrations: 4/4"), "{err}");
    assert!(err.contains("TLS handshakes: 4/4"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escapes in plain mode: {err:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["registered"], 4);
}
