//! The `.deb` metadata ([package.metadata.deb] of fleethub-server and fleetedge), the systemd
//! units and the maintainer scripts agree: what a unit runs, reads and documents is in the
//! package, the user it runs as is created, the default config is valid and points at the
//! unit's state directory, and the packaged units match the hand-install ones
//! (packaging/systemd/) but for the binary's directory. No package is built here
//! (scripts/package.sh does that).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Package {
    crate_dir: PathBuf,
    deb: toml::Table,
}

impl Package {
    fn load(krate: &str) -> Package {
        let crate_dir = root().join("crates").join(krate);
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap())
                .unwrap();
        let deb = manifest["package"]["metadata"]["deb"]
            .as_table()
            .unwrap_or_else(|| panic!("{krate}: no [package.metadata.deb]"))
            .clone();
        Package { crate_dir, deb }
    }

    fn str(&self, key: &str) -> &str {
        self.deb[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"))
    }

    /// (source, installed path) of every asset; a target ending in `/` gets the file name.
    fn assets(&self) -> Vec<(String, String)> {
        self.deb["assets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let a = a.as_array().unwrap();
                let (src, dst) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
                let dst = if dst.ends_with('/') {
                    format!(
                        "/{dst}{}",
                        Path::new(src).file_name().unwrap().to_str().unwrap()
                    )
                } else {
                    format!("/{dst}")
                };
                (src.to_string(), dst)
            })
            .collect()
    }

    fn installs(&self, path: &str) -> bool {
        self.assets().iter().any(|(_, d)| d == path)
    }

    fn scripts_dir(&self) -> PathBuf {
        self.crate_dir.join(self.str("maintainer-scripts"))
    }
}

/// `Key=value` lines of a unit (comments and blank lines dropped).
fn directives(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn value<'a>(unit: &'a [String], key: &str) -> &'a str {
    unit.iter()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("unit has no {key}="))
}

fn check(krate: &str, name: &str) -> (Package, Vec<String>) {
    let p = Package::load(krate);
    assert_eq!(p.str("name"), name);
    for (src, dst) in p.assets() {
        if !src.starts_with("target/") {
            assert!(
                p.crate_dir.join(&src).exists(),
                "{name}: asset {src} does not exist"
            );
        }
        assert!(
            !dst.starts_with("/usr/local"),
            "{name}: a package never installs into /usr/local"
        );
    }
    let units = p.deb["systemd-units"].as_table().unwrap();
    assert_eq!(units["unit-name"].as_str(), Some(name));
    assert_eq!(
        units["start"].as_bool(),
        Some(false),
        "{name}: configured first, started by the administrator"
    );

    let unit_text = std::fs::read_to_string(p.scripts_dir().join(format!("{name}.service")))
        .unwrap_or_else(|e| panic!("{name}: the packaged unit: {e}"));
    let unit = directives(&unit_text);

    // What the unit runs is the packaged binary.
    let exec = value(&unit, "ExecStart");
    let binary = exec.split_whitespace().next().unwrap();
    assert_eq!(binary, format!("/usr/bin/{name}"));
    assert!(p.installs(binary), "{name}: {binary} is not in the assets");
    // Its documentation is in the package.
    let doc = value(&unit, "Documentation").trim_start_matches("file://");
    assert!(
        p.installs(doc),
        "{name}: Documentation={doc} is not in the assets"
    );

    // The user the unit runs as is created by postinst, which keeps #DEBHELPER#.
    let user = value(&unit, "User");
    assert_eq!(user, name);
    let postinst = std::fs::read_to_string(p.scripts_dir().join("postinst")).unwrap();
    assert!(
        postinst.contains("#DEBHELPER#"),
        "{name}: postinst lacks #DEBHELPER#"
    );
    assert!(
        postinst.contains(&format!(
            "--home /var/lib/{}",
            value(&unit, "StateDirectory")
        )) && postinst.contains(&format!(" {user}\n")),
        "{name}: postinst must create the {user} user with the state directory as home"
    );

    // The hand-install unit is the same but for /usr/local/bin.
    let manual = std::fs::read_to_string(root().join(format!("packaging/systemd/{name}.service")))
        .unwrap()
        .replace("/usr/local/bin/", "/usr/bin/");
    assert_eq!(
        directives(&manual),
        unit,
        "packaging/deb/{name}/{name}.service and packaging/systemd/{name}.service differ"
    );
    (p, unit)
}

#[test]
fn server_package_unit_and_config_agree() {
    let (p, unit) = check("fleethub-server", "fleethub");
    let exec = value(&unit, "ExecStart");
    let config = exec
        .split_whitespace()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("ExecStart passes --config");
    assert!(p.installs(config), "{config} is not in the assets");
    assert!(
        p.deb["conf-files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str() == Some(config)),
        "{config} must be a conffile (local edits survive upgrades)"
    );
    let (src, _) = p.assets().into_iter().find(|(_, d)| d == config).unwrap();
    let cfg = fleethub_server::config::Config::from_file(&p.crate_dir.join(src))
        .expect("the packaged config is valid");
    assert_eq!(
        cfg.data_dir,
        PathBuf::from(format!("/var/lib/{}", value(&unit, "StateDirectory"))),
        "the config's data_dir is the unit's StateDirectory"
    );
    assert_eq!(
        value(&unit, "StateDirectoryMode"),
        "0700",
        "the data directory holds keys"
    );
}

#[test]
fn edge_package_unit_agrees() {
    let (_p, unit) = check("fleetedge", "fleetedge");
    assert!(
        unit.contains(&format!(
            "Environment=FLEETEDGE_CONFIG=/etc/{}/config.toml",
            value(&unit, "ConfigurationDirectory")
        )),
        "the edge config lives in the unit's ConfigurationDirectory"
    );
}
