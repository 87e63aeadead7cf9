//! `fleethub backup` of a running server and `fleethub restore` into a stopped one.

mod common;

use common::ServerProcess;

#[test]
fn online_backup_then_restore_brings_the_registry_back() {
    let mut s = ServerProcess::start();
    let ok = |s: &ServerProcess, args: &[&str]| {
        let (ok, out, err) = s.cli(args);
        assert!(ok, "{args:?}: {err}");
        (out, err)
    };
    ok(&s, &["hub", "device-identity", "create", "-d", "keep-me"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backup.db");
    let file_s = file.to_str().unwrap();
    let (_, err) = ok(&s, &["backup", "--out", file_s]);
    assert!(err.contains(&s.info.id_scope), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds every key");
    }
    let (done, _, err) = s.cli(&["backup", "--out", file_s]);
    assert!(!done && err.contains("not empty"), "{err}");

    ok(
        &s,
        &["hub", "device-identity", "create", "-d", "after-backup"],
    );
    let (done, _, err) = s.cli(&["restore", "--from", file_s]);
    assert!(
        !done && err.contains("in use"),
        "refused while the server runs: {err}"
    );

    s.kill9();
    let (_, err) = ok(&s, &["restore", "--from", file_s]);
    assert!(err.contains("replaced store is kept"), "{err}");
    s.restart();
    let (out, _) = ok(&s, &["hub", "device-identity", "list"]);
    assert!(
        out.contains("keep-me") && !out.contains("after-backup"),
        "{out}"
    );
}
