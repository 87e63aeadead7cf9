//! `fleetedge list`: NAME, STATUS, DESCRIPTION, CONFIG like `iotedge list`.

use chrono::{DateTime, Utc};
use std::fmt::Write as _;

use crate::mgmt::ModuleRow;

/// Docker-style human duration ("3 minutes", "About an hour").
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<String> {
    t.map(|t| {
        let d = human_duration((now - t).num_seconds());
        let mut chars = d.chars();
        let lower = match chars.next() {
            Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
            None => d,
        };
        format!("{lower} ago")
    })
}

/// The DESCRIPTION column; a module that is not running says why when the daemon knows
/// (e.g. the edge hub's bind error).
pub fn describe(row: &ModuleRow, now: DateTime<Utc>) -> String {
    let base = describe_state(row, now);
    match (&row.status_description, row.runtime_status.as_str()) {
        (Some(why), "failed" | "backoff" | "stopped") if !why.is_empty() => {
            format!("{base}: {why}")
        }
        _ => base,
    }
}

fn describe_state(row: &ModuleRow, now: DateTime<Utc>) -> String {
    let code = row.exit_code.map_or_else(|| "-".into(), |c| c.to_string());
    match row.runtime_status.as_str() {
        "running" => match row.last_start_time_utc {
            Some(t) => format!(
                "Up {}",
                human_duration((now - t).num_seconds()).to_lowercase()
            ),
            None => "Up".into(),
        },
        "stopped" => match ago(row.last_exit_time_utc, now) {
            Some(a) => format!("Stopped {a}"),
            None => "Stopped".into(),
        },
        "failed" => match (ago(row.last_exit_time_utc, now), row.exit_code) {
            (Some(a), _) => format!("Failed ({code}) {a}"),
            (None, Some(_)) => format!("Failed ({code})"),
            (None, None) => "Failed".into(),
        },
        "backoff" => match ago(row.last_exit_time_utc, now) {
            Some(a) => format!("Backoff ({code}) {a}"),
            None => format!("Backoff ({code})"),
        },
        _ => "Unknown".into(),
    }
}

/// The table, columns aligned, rows sorted by name.
pub fn render(rows: &[ModuleRow], now: DateTime<Utc>) -> String {
    let mut rows: Vec<&ModuleRow> = rows.iter().collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let table: Vec<[String; 4]> = std::iter::once([
        "NAME".to_string(),
        "STATUS".to_string(),
        "DESCRIPTION".to_string(),
        "CONFIG".to_string(),
    ])
    .chain(rows.iter().map(|r| {
        [
            r.name.clone(),
            r.runtime_status.clone(),
            describe(r, now),
            r.config.clone(),
        ]
    }))
    .collect();
    let mut widths = [0usize; 3];
    for row in &table {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(row[i].chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(out, "{:<width$}   ", row[i], width = w);
        }
        out.push_str(&row[3]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn row(name: &str, status: &str, code: Option<i32>) -> ModuleRow {
        ModuleRow {
            name: name.into(),
            runtime_status: status.into(),
            exit_code: code,
            status_description: None,
            last_start_time_utc: None,
            last_exit_time_utc: None,
            restart_count: 0,
            config: "/bin/sh -c x".into(),
        }
    }

    #[test]
    fn descriptions_like_iotedge() {
        let now = Utc::now();
        let mut r = row("a", "running", None);
        r.last_start_time_utc = Some(now - Duration::seconds(180));
        assert_eq!(describe(&r, now), "Up 3 minutes");
        let mut f = row("b", "failed", Some(1));
        f.last_exit_time_utc = Some(now - Duration::seconds(5));
        assert_eq!(describe(&f, now), "Failed (1) 5 seconds ago");
        let mut s = row("c", "stopped", Some(0));
        s.last_exit_time_utc = Some(now - Duration::seconds(7300));
        assert_eq!(describe(&s, now), "Stopped 2 hours ago");
        let mut b = row("d", "backoff", Some(3));
        b.last_exit_time_utc = Some(now);
        assert_eq!(describe(&b, now), "Backoff (3) less than a second ago");
        assert_eq!(describe(&row("e", "unknown", None), now), "Unknown");
        // a system module that failed to start says why
        let mut hub = row("edgeHub", "failed", None);
        hub.status_description =
            Some("cannot listen on 127.0.0.1:8883: Address in use (os error 98)".into());
        assert_eq!(
            describe(&hub, now),
            "Failed: cannot listen on 127.0.0.1:8883: Address in use (os error 98)"
        );
        let mut up = row("edgeAgent", "running", None);
        up.status_description = Some("connected to the hub".into());
        assert_eq!(describe(&up, now), "Up");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(4000), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn table_is_sorted_and_aligned() {
        let now = Utc::now();
        let t = render(
            &[
                row("zeta", "running", None),
                row("alpha", "failed", Some(2)),
            ],
            now,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME "));
        assert!(lines[1].starts_with("alpha "));
        assert!(lines[2].starts_with("zeta "));
        let col = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("failed").unwrap(), col);
        assert_eq!(lines[2].find("running").unwrap(), col);
        assert!(lines[1].ends_with("/bin/sh -c x"));
    }
}
