//! `fleethub backup` and `fleethub restore`: the store (`DATA_DIR/store.db`: devices, keys,
//! enrollments, twins, telemetry, the server identity) copied while the server runs, owner-only,
//! and put back while it is stopped. Certificates (`certs/`) are plain files: copy them with the
//! backup (see docs/operations.md).

use crate::data_dir;
use anyhow::{Context, Result, bail};
use fleethub_store::sqlite::SqliteStore;
use fleethub_store::{BackupStore, SettingsStore};
use std::path::{Path, PathBuf};

/// The store's file name in the data directory.
pub const STORE_FILE: &str = "store.db";

/// The setting every fleethub store has (the server identity).
const ID_SCOPE: &str = "id_scope";

/// Writes a consistent copy of `DATA_DIR/store.db` to `out` (a new, owner-only file), also while
/// a server runs on the directory. Returns the copy's size and the ID scope it holds.
pub async fn backup(data_dir: &Path, out: &Path) -> Result<(u64, String)> {
    let db = data_dir.join(STORE_FILE);
    if !db.exists() {
        bail!(
            "no store at {}: pass the --data-dir of the server to back up",
            db.display()
        );
    }
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let id_scope = store.get_setting(ID_SCOPE).await?.unwrap_or_default();
    store
        .backup_to(out)
        .await
        .with_context(|| format!("writing {}", out.display()))?;
    Ok((std::fs::metadata(out)?.len(), id_scope))
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub id_scope: String,
    /// Where the store it replaced was moved (with its `-wal`/`-shm`), if there was one.
    pub previous: Option<PathBuf>,
}

/// Replaces `DATA_DIR/store.db` with the backup `from`. Refused while a server runs on the
/// directory (its lock is taken) and when `from` is not a fleethub store; the replaced store is
/// kept as `store.db.before-restore-UNIXTIME` (and put back if the backup does not open).
pub async fn restore(data_dir: &Path, from: &Path, now_unix: u64) -> Result<Restored> {
    let mut head = [0u8; 16];
    let read = std::fs::File::open(from)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .with_context(|| format!("reading {}", from.display()));
    if read.is_err() || &head != b"SQLite format 3\0" {
        read?;
        bail!(
            "{} is not a fleethub backup (not an SQLite database)",
            from.display()
        );
    }
    create_private_dir(data_dir)?;
    let _lock = data_dir::lock(data_dir)?;
    let db = data_dir.join(STORE_FILE);
    let previous = if db.exists() {
        let saved = data_dir.join(format!("{STORE_FILE}.before-restore-{now_unix}"));
        move_with_journal(&db, &saved)?;
        Some(saved)
    } else {
        None
    };
    let checked = async {
        copy_private(from, &db)?;
        let store = SqliteStore::open(&db)?;
        match store.get_setting(ID_SCOPE).await? {
            Some(scope) => Ok(scope),
            None => bail!(
                "{} holds no server identity: not a fleethub backup",
                from.display()
            ),
        }
    }
    .await;
    match checked {
        Ok(id_scope) => Ok(Restored { id_scope, previous }),
        Err(e) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(with_suffix(&db, suffix));
            }
            if let Some(saved) = &previous {
                move_with_journal(saved, &db)?;
            }
            Err(e)
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Renames a database with its `-wal` and `-shm` files.
fn move_with_journal(from: &Path, to: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", ""] {
        let (a, b) = (with_suffix(from, suffix), with_suffix(to, suffix));
        if a.exists() {
            std::fs::rename(&a, &b)
                .with_context(|| format!("moving {} to {}", a.display(), b.display()))?;
        }
    }
    Ok(())
}

/// Copies `from` to a new owner-only `to`.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut out = o
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let mut src = std::fs::File::open(from)?;
    std::io::copy(&mut src, &mut out).with_context(|| format!("copying to {}", to.display()))?;
    out.sync_all()?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backup_then_restore_over_a_changed_store() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        {
            let s = SqliteStore::open(&data.join(STORE_FILE)).unwrap();
            s.init_setting(ID_SCOPE, "0ne000AAAA1").await.unwrap();
        }
        let out = tmp.path().join("b.db");
        let (size, scope) = backup(&data, &out).await.unwrap();
        assert!(size > 0);
        assert_eq!(scope, "0ne000AAAA1");
        // The store changes after the backup; the restore brings the backup's state back.
        {
            let s = SqliteStore::open(&data.join(STORE_FILE)).unwrap();
            s.put_setting(ID_SCOPE, "0ne000CHANGED").await.unwrap();
        }
        let r = restore(&data, &out, 42).await.unwrap();
        assert_eq!(r.id_scope, "0ne000AAAA1");
        assert_eq!(
            r.previous.as_deref(),
            Some(data.join("store.db.before-restore-42").as_path())
        );
        let s = SqliteStore::open(&data.join(STORE_FILE)).unwrap();
        assert_eq!(
            s.get_setting(ID_SCOPE).await.unwrap().as_deref(),
            Some("0ne000AAAA1")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(STORE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn restore_refuses_what_is_not_a_backup_and_keeps_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        {
            let s = SqliteStore::open(&data.join(STORE_FILE)).unwrap();
            s.init_setting(ID_SCOPE, "0ne000KEEP1").await.unwrap();
        }
        let text = tmp.path().join("notes.txt");
        std::fs::write(&text, "hello, this is not a database").unwrap();
        let e = restore(&data, &text, 1).await.unwrap_err().to_string();
        assert!(e.contains("not a fleethub backup"), "{e}");
        // An SQLite file without a server identity: refused, the old store put back.
        let empty = tmp.path().join("empty.db");
        drop(SqliteStore::open(&empty).unwrap());
        let e = restore(&data, &empty, 2).await.unwrap_err().to_string();
        assert!(e.contains("no server identity"), "{e}");
        let s = SqliteStore::open(&data.join(STORE_FILE)).unwrap();
        assert_eq!(
            s.get_setting(ID_SCOPE).await.unwrap().as_deref(),
            Some("0ne000KEEP1")
        );
        // While a server holds the directory, nothing is touched.
        let _held = data_dir::lock(&data).unwrap();
        let e = restore(&data, &empty, 3).await.unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
    }
}
