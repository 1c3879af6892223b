//! The packages admins install: builds the .deb and .rpm with `packaging/build`, runs lintian,
//! reads the rpm's files, scripts and config flags, then installs, edits, upgrades, removes and
//! purges the .deb in a clean Debian root (`packaging/test/debroot`, debootstrap, cached).
//!
//! It needs root (chroot, file owners), debootstrap, lintian and rpm. Without them it says why
//! on stderr and passes, unless `TOCSIN_REQUIRE_PACKAGING=1` (set by `.ci/run`) makes a
//! missing piece a failure. It packages the debug build the suite already made: a release
//! build of DuckDB takes 30+ minutes; `packaging/build` alone builds release.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tocsin_tests::{bin, write_file};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A line only the rebuilt package's default agent.toml has.
const NEW_DEFAULT: &str = "# changed default shipped by revision 2";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
        .to_path_buf()
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root: chroot and file owners need it".into());
    }
    for (tool, package) in [
        ("debootstrap", "debootstrap"),
        ("lintian", "lintian"),
        ("rpm", "rpm"),
        ("dpkg-deb", "dpkg"),
        ("strip", "binutils"),
        ("systemd-analyze", "systemd"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is missing (apt-get install {package})"));
        }
    }
    None
}

fn run(what: &str, cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"))
}

/// Run and require success; returns stdout.
fn ok(what: &str, cmd: &mut Command) -> String {
    let out = run(what, cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the work tree (tracked and untracked-but-not-ignored files), so a test can change
/// a default config and rebuild without touching the real tree.
fn copy_tree(to: &Path) {
    let root = repo_root();
    let list = ok(
        "git ls-files",
        Command::new("git").current_dir(&root).args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ]),
    );
    for rel in list.split('\0').filter(|r| !r.is_empty()) {
        let from = root.join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree but still in the index
        }
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("a file has a folder")).expect("mkdir");
        std::fs::copy(&from, &dest).unwrap_or_else(|e| panic!("copy {rel}: {e}"));
    }
}

/// `packaging/build` in `tree`, packaging the test's own (debug) binaries.
fn build_packages(tree: &Path, out: &Path, extra: &[&str]) {
    let bin_dir = bin("tocsin-agent")
        .parent()
        .expect("binaries folder")
        .to_path_buf();
    ok(
        "packaging/build",
        Command::new(tree.join("packaging/build"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out")
            .arg(out)
            .arg("--fast")
            .args(extra),
    );
}

fn deb(out: &Path, package: &str, revision: u32) -> PathBuf {
    let arch = ok(
        "dpkg arch",
        Command::new("dpkg").arg("--print-architecture"),
    );
    let path = out.join(format!(
        "{package}_{VERSION}-{revision}_{}.deb",
        arch.trim()
    ));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn rpm(out: &Path, package: &str) -> PathBuf {
    let path = std::fs::read_dir(out)
        .expect("packages folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(&format!("{package}-{VERSION}-1.")) && name.ends_with(".rpm")
        });
    path.unwrap_or_else(|| panic!("no {package} rpm in {}", out.display()))
}

/// lintian on one .deb: no error, and no warning that is not overridden with a reason
/// (packaging/lintian/<package>).
fn lintian_clean(deb: &Path) {
    let out = run(
        "lintian",
        Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(deb),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "lintian could not check {} ({}):\n{text}",
        deb.display(),
        out.status
    );
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        problems.is_empty(),
        "lintian on {}:\n{}",
        deb.display(),
        problems.join("\n")
    );
}

/// The rpm's metadata, files with their flags, and scriptlets.
fn check_rpm(rpm: &Path, package: &str, files: &[&str], config: &[&str]) {
    let info = ok("rpm -qip", Command::new("rpm").arg("-qip").arg(rpm));
    assert!(info.contains(&format!("Name        : {package}")), "{info}");
    assert!(info.contains(&format!("Version     : {VERSION}")), "{info}");
    assert!(info.contains("License     : Apache-2.0"), "{info}");
    let list = ok("rpm -qlp", Command::new("rpm").arg("-qlp").arg(rpm));
    for f in files {
        assert!(
            list.lines().any(|l| l == *f),
            "{package} rpm lacks {f}:\n{list}"
        );
    }
    // %{FILEFLAGS:fflags}: c = %config, n = noreplace, d = %doc.
    let flags = ok(
        "rpm file flags",
        Command::new("rpm").arg("-qp").arg("--qf").arg(
            "[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
        ).arg(rpm),
    );
    for line in flags.lines().filter(|l| l.contains(" /etc/")) {
        let fflags = line.split(' ').next().unwrap_or_default();
        assert!(
            fflags.contains('c') && fflags.contains('n'),
            "every file under /etc is %config(noreplace): {line}"
        );
    }
    for c in config {
        let line = flags
            .lines()
            .find(|l| l.ends_with(&format!(" {c}")))
            .unwrap_or_else(|| panic!("{c} not in the rpm:\n{flags}"));
        let fflags = line.split(' ').next().unwrap_or_default();
        assert!(
            fflags.contains('c') && fflags.contains('n'),
            "{c} must be %config(noreplace): {line}"
        );
        assert!(line.contains("root:root"), "{line}");
    }
    for line in flags.lines().filter(|l| l.contains("/usr/bin/")) {
        assert!(line.contains("-rwxr-xr-x root:root"), "{line}");
    }
    let scripts = ok(
        "rpm --scripts",
        Command::new("rpm").arg("-qp").arg("--scripts").arg(rpm),
    );
    for needle in [
        "preinstall scriptlet",
        "useradd -r -g tocsin",
        "postinstall scriptlet",
        "install -d -o tocsin -g tocsin -m 0750",
        &format!("systemctl --no-reload preset {package}.service"),
        "preuninstall scriptlet",
        &format!("disable --now {package}.service"),
        "postuninstall scriptlet",
        &format!("try-restart {package}.service"),
    ] {
        assert!(
            scripts.contains(needle),
            "{package} rpm scripts lack {needle:?}:\n{scripts}"
        );
    }
    let requires = ok("rpm -qpR", Command::new("rpm").arg("-qpR").arg(rpm));
    assert!(requires.contains("shadow-utils"), "{requires}");
}

/// A clean Debian root, from the cached debootstrap tarball.
struct Root {
    path: PathBuf,
}

impl Root {
    fn new(path: PathBuf) -> Root {
        ok(
            "packaging/test/debroot",
            Command::new(repo_root().join("packaging/test/debroot")).arg(&path),
        );
        Root { path }
    }

    fn file(&self, abs: &str) -> PathBuf {
        self.path.join(abs.trim_start_matches('/'))
    }

    fn exists(&self, abs: &str) -> bool {
        self.file(abs).symlink_metadata().is_ok()
    }

    /// `chroot ROOT args...` with a plain environment; the raw output.
    fn chroot(&self, user: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("chroot");
        if let Some(user) = user {
            cmd.arg(format!("--userspec={user}:{user}"));
        }
        cmd.arg(&self.path)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(&format!("chroot {args:?}"), &mut cmd)
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        let out = self.chroot(None, args);
        assert!(
            out.status.success(),
            "chroot {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copy a package into the root's /tmp and return its path inside the root.
    fn stage(&self, package: &Path) -> String {
        let name = package.file_name().and_then(|n| n.to_str()).expect("name");
        std::fs::copy(package, self.file("/tmp").join(name)).expect("copy package into root");
        format!("/tmp/{name}")
    }

    /// (uid, gid, home, shell) of a user in the root's /etc/passwd.
    fn user(&self, name: &str) -> Option<(u32, u32, String, String)> {
        let passwd = std::fs::read_to_string(self.file("/etc/passwd")).expect("passwd");
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 7 && f[0] == name).then(|| {
                (
                    f[2].parse().expect("uid"),
                    f[3].parse().expect("gid"),
                    f[5].to_string(),
                    f[6].to_string(),
                )
            })
        })
    }

    /// Mode (permission bits) and owner uid/gid of a path in the root.
    fn mode(&self, abs: &str) -> (u32, u32, u32) {
        let m = self
            .file(abs)
            .metadata()
            .unwrap_or_else(|e| panic!("{abs} in the root: {e}"));
        (m.permissions().mode() & 0o7777, m.uid(), m.gid())
    }

    fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.file(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    fn dpkg_status(&self, package: &str) -> String {
        let out = self.chroot(
            None,
            &[
                "dpkg-query",
                "-W",
                "-f",
                "${db:Status-Status} ${Version}",
                package,
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn packages_build_lint_install_upgrade_purge() {
    if let Some(why) = missing_prerequisite() {
        let required = std::env::var("TOCSIN_REQUIRE_PACKAGING").is_ok_and(|v| v == "1");
        assert!(!required, "packages test cannot run: {why}");
        eprintln!(
            "SKIPPED packages test: {why} (set TOCSIN_REQUIRE_PACKAGING=1 to make this fail)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    copy_tree(&tree);

    // Revision 1 of both packages, then revision 2 of the agent with a changed default config.
    let v1 = dir.path().join("v1");
    build_packages(&tree, &v1, &[]);
    // The units, with the man pages just generated: `systemd-analyze verify` clean, security
    // exposure not above the figures in packaging/README.md.
    ok(
        "packaging/test/verify-units",
        &mut Command::new(tree.join("packaging/test/verify-units")),
    );
    let agent_toml = tree.join("packaging/etc/agent.toml");
    let shipped = std::fs::read_to_string(&agent_toml).expect("agent.toml");
    write_file(&agent_toml, &format!("{shipped}\n{NEW_DEFAULT}\n"));
    let v2 = dir.path().join("v2");
    build_packages(
        &tree,
        &v2,
        &["--revision", "2", "--package", "tocsin-agent"],
    );
    let agent_v1 = deb(&v1, "tocsin-agent", 1);
    let agent_v2 = deb(&v2, "tocsin-agent", 2);
    let collector_v1 = deb(&v1, "tocsin-collector", 1);

    lintian_clean(&agent_v1);
    lintian_clean(&collector_v1);

    check_rpm(
        &rpm(&v1, "tocsin-agent"),
        "tocsin-agent",
        &[
            "/usr/bin/tocsin-agent",
            "/etc/tocsin/agent.toml",
            "/usr/lib/systemd/system/tocsin-agent.service",
            "/usr/lib/sysusers.d/tocsin.conf",
            "/usr/share/man/man1/tocsin-agent.1.gz",
            "/usr/share/bash-completion/completions/tocsin-agent",
            "/usr/share/licenses/tocsin-agent/copyright",
        ],
        &["/etc/tocsin/agent.toml"],
    );
    check_rpm(
        &rpm(&v1, "tocsin-collector"),
        "tocsin-collector",
        &[
            "/usr/bin/tocsin-collector",
            "/usr/bin/tocsin",
            "/etc/tocsin/collector.toml",
            "/etc/tocsin/rules/policy.toml",
            "/usr/lib/systemd/system/tocsin-collector.service",
            "/usr/share/man/man1/tocsin.1.gz",
            "/usr/share/man/man1/tocsin-collector.1.gz",
        ],
        &[
            "/etc/tocsin/collector.toml",
            "/etc/tocsin/rules/policy.toml",
        ],
    );

    let root = Root::new(dir.path().join("root"));
    install_agent(&root, &agent_v1);
    let admin_toml = edit_agent_config(&root);
    upgrade_agent(&root, &agent_v2, &admin_toml);
    install_collector(&root, &collector_v1);
    remove_and_purge(&root);
}

/// Fresh install: files, owners and modes, the conffile, the user, and a config check that
/// passes as root and as the service user.
fn install_agent(root: &Root, deb: &Path) {
    let inside = root.stage(deb);
    root.chroot_ok(&["dpkg", "-i", &inside]);
    assert_eq!(
        root.dpkg_status("tocsin-agent"),
        format!("installed {VERSION}-1")
    );

    let (uid, gid, home, shell) = root.user("tocsin").expect("the tocsin user exists");
    assert!(uid < 1000 && uid > 0, "a system uid, got {uid}");
    assert_eq!(home, "/var/lib/tocsin");
    assert_eq!(shell, "/usr/sbin/nologin");
    let group = std::fs::read_to_string(root.file("/etc/group")).expect("group");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("tocsin:x:{gid}:"))),
        "group tocsin with gid {gid}"
    );

    for (path, mode) in [
        ("/usr/bin/tocsin-agent", 0o755),
        ("/etc/tocsin/agent.toml", 0o644),
        ("/usr/lib/systemd/system/tocsin-agent.service", 0o644),
        ("/usr/share/man/man1/tocsin-agent.1.gz", 0o644),
        ("/usr/share/man/man1/tocsin-agent-run.1.gz", 0o644),
        ("/usr/share/man/man1/tocsin-agent-check-config.1.gz", 0o644),
        ("/usr/share/bash-completion/completions/tocsin-agent", 0o644),
        ("/usr/share/zsh/vendor-completions/_tocsin-agent", 0o644),
        (
            "/usr/share/fish/vendor_completions.d/tocsin-agent.fish",
            0o644,
        ),
        ("/usr/share/doc/tocsin-agent/copyright", 0o644),
        ("/usr/share/doc/tocsin-agent/changelog.Debian.gz", 0o644),
        ("/usr/share/doc/tocsin-agent/agent.example.toml", 0o644),
        ("/etc/tocsin/agent.d", 0o755),
    ] {
        assert_eq!(root.mode(path), (mode, 0, 0), "{path}: mode, owner, group");
    }
    for path in ["/var/lib/tocsin", "/var/lib/tocsin/spool"] {
        assert_eq!(
            root.mode(path),
            (0o750, uid, gid),
            "{path} belongs to tocsin"
        );
    }
    let conffiles = root.read("/var/lib/dpkg/info/tocsin-agent.conffiles");
    assert_eq!(conffiles.trim(), "/etc/tocsin/agent.toml");
    let copyright = root.read("/usr/share/doc/tocsin-agent/copyright");
    assert!(copyright.contains("/usr/share/common-licenses/Apache-2.0"));

    // The shipped config is valid as is, for root and for the user the unit runs as.
    let out = root.chroot_ok(&["tocsin-agent", "check-config"]);
    assert!(out.contains("/etc/tocsin/agent.toml: ok"), "{out}");
    let as_service = root.chroot(Some("tocsin"), &["/usr/bin/tocsin-agent", "check-config"]);
    assert!(
        as_service.status.success(),
        "check-config as tocsin: {}",
        String::from_utf8_lossy(&as_service.stderr)
    );
    // The binary in the package is the one that answers.
    let version = root.chroot_ok(&["tocsin-agent", "--version"]);
    assert_eq!(version.trim(), format!("tocsin-agent {VERSION}"));
}

/// What an admin or config management does: edit agent.toml, add a drop-in naming a password
/// file. The agent refuses the password file while every user can read it.
fn edit_agent_config(root: &Root) -> String {
    let shipped = root.read("/etc/tocsin/agent.toml");
    let edited = shipped.replace("site = \"default\"", "site = \"edited-by-admin\"");
    assert_ne!(
        edited, shipped,
        "the shipped agent.toml sets site = \"default\""
    );
    write_file(&root.file("/etc/tocsin/agent.toml"), &edited);
    write_file(
        &root.file("/etc/tocsin/agent.d/10-enrol.toml"),
        "[broker]\nusername = \"web-01\"\npassword_file = \"/etc/tocsin/mqtt-password\"\n",
    );
    let password = root.file("/etc/tocsin/mqtt-password");
    write_file(&password, "s3cret\n");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let refused = root.chroot(None, &["tocsin-agent", "check-config"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a world-readable password file is refused"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("/etc/tocsin/mqtt-password") && stderr.contains("chmod"),
        "the error names the file and the fix: {stderr}"
    );
    root.chroot_ok(&["chown", "root:tocsin", "/etc/tocsin/mqtt-password"]);
    root.chroot_ok(&["chmod", "0640", "/etc/tocsin/mqtt-password"]);
    let out = root.chroot_ok(&["tocsin-agent", "check-config"]);
    assert!(out.contains("site edited-by-admin"), "{out}");
    // The service user reads it through its group.
    let as_service = root.chroot(Some("tocsin"), &["/usr/bin/tocsin-agent", "check-config"]);
    assert!(
        as_service.status.success(),
        "check-config as tocsin: {}",
        String::from_utf8_lossy(&as_service.stderr)
    );
    edited
}

/// Upgrade to a package whose default agent.toml changed: the admin's file stays, the new
/// default lands beside it as agent.toml.dpkg-dist.
fn upgrade_agent(root: &Root, deb: &Path, admin_toml: &str) {
    let inside = root.stage(deb);
    // What apt does under configuration management: keep the admin's version, no prompt.
    root.chroot_ok(&["dpkg", "--force-confdef", "--force-confold", "-i", &inside]);
    assert_eq!(
        root.dpkg_status("tocsin-agent"),
        format!("installed {VERSION}-2")
    );
    assert_eq!(root.read("/etc/tocsin/agent.toml"), admin_toml);
    let dist = root.read("/etc/tocsin/agent.toml.dpkg-dist");
    assert!(
        dist.contains(NEW_DEFAULT),
        "the new default is kept beside it"
    );
    assert!(root.exists("/etc/tocsin/agent.d/10-enrol.toml"));
    let (uid, gid, _, _) = root.user("tocsin").expect("user");
    assert_eq!(root.mode("/var/lib/tocsin/spool"), (0o750, uid, gid));
    let out = root.chroot_ok(&["tocsin-agent", "check-config"]);
    assert!(out.contains("site edited-by-admin"), "{out}");
}

/// The collector package beside the agent: its binaries, config and rules as conffiles, and a
/// config check as the service user (rules readable, store folder writable).
fn install_collector(root: &Root, deb: &Path) {
    let inside = root.stage(deb);
    root.chroot_ok(&["dpkg", "-i", &inside]);
    assert_eq!(
        root.dpkg_status("tocsin-collector"),
        format!("installed {VERSION}-1")
    );
    for (path, mode) in [
        ("/usr/bin/tocsin-collector", 0o755),
        ("/usr/bin/tocsin", 0o755),
        ("/etc/tocsin/collector.toml", 0o644),
        ("/etc/tocsin/rules/policy.toml", 0o644),
        ("/etc/tocsin/rules/host.toml", 0o644),
        ("/usr/lib/systemd/system/tocsin-collector.service", 0o644),
        ("/usr/share/man/man1/tocsin-collector.1.gz", 0o644),
        ("/usr/share/man/man1/tocsin.1.gz", 0o644),
        ("/usr/share/man/man1/tocsin-ticket.1.gz", 0o644),
        ("/usr/share/bash-completion/completions/tocsin", 0o644),
        ("/usr/share/doc/tocsin-collector/copyright", 0o644),
    ] {
        assert_eq!(root.mode(path), (mode, 0, 0), "{path}: mode, owner, group");
    }
    let conffiles = root.read("/var/lib/dpkg/info/tocsin-collector.conffiles");
    for f in [
        "/etc/tocsin/collector.toml",
        "/etc/tocsin/rules/policy.toml",
    ] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} is a conffile:\n{conffiles}"
        );
    }
    let out = root.chroot(
        Some("tocsin"),
        &["/usr/bin/tocsin-collector", "check-config"],
    );
    assert!(
        out.status.success(),
        "collector check-config as tocsin: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Stand-ins for what a running collector leaves, so purge has something to remove.
    for f in [
        "/var/lib/tocsin/tocsin.duckdb",
        "/var/lib/tocsin/tocsin.duckdb.wal",
    ] {
        write_file(&root.file(f), "data");
    }
    write_file(
        &root.file("/var/lib/tocsin/archive/alerts/x.parquet"),
        "data",
    );
}

/// Remove keeps configuration and data; purge removes the package's own, keeps what the admin
/// added (drop-ins, credentials) and the system user.
fn remove_and_purge(root: &Root) {
    root.chroot_ok(&["dpkg", "-r", "tocsin-agent"]);
    assert_eq!(
        root.dpkg_status("tocsin-agent"),
        format!("config-files {VERSION}-2")
    );
    assert!(!root.exists("/usr/bin/tocsin-agent"));
    assert!(!root.exists("/usr/lib/systemd/system/tocsin-agent.service"));
    assert!(
        root.exists("/etc/tocsin/agent.toml"),
        "remove keeps conffiles"
    );
    assert!(root.exists("/var/lib/tocsin/spool"), "remove keeps state");

    root.chroot_ok(&["dpkg", "-P", "tocsin-agent"]);
    for gone in [
        "/etc/tocsin/agent.toml",
        "/etc/tocsin/agent.toml.dpkg-dist",
        "/var/lib/tocsin/spool",
    ] {
        assert!(!root.exists(gone), "{gone} is left after purge");
    }
    for kept in [
        "/etc/tocsin/agent.d/10-enrol.toml",
        "/etc/tocsin/mqtt-password",
        "/var/lib/tocsin/tocsin.duckdb",
        "/usr/bin/tocsin-collector",
    ] {
        assert!(root.exists(kept), "{kept} must survive the agent's purge");
    }

    root.chroot_ok(&["dpkg", "-P", "tocsin-collector"]);
    for gone in [
        "/usr/bin/tocsin-collector",
        "/usr/bin/tocsin",
        "/etc/tocsin/collector.toml",
        "/etc/tocsin/rules",
        "/var/lib/tocsin",
    ] {
        assert!(!root.exists(gone), "{gone} is left after purge");
    }
    // Debian keeps system users: files they own may outlive the package.
    assert!(root.user("tocsin").is_some());
    assert_eq!(root.dpkg_status("tocsin-collector"), "");
}
