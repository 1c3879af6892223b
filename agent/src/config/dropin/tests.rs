//! Tests of config drop-ins: order, merge rules, ignored names, and errors naming the right file.

use std::time::Duration;

use super::*;

/// A config directory: `agent.toml` with `main`, and `agent.d/<name>` for each drop-in.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(main: &str, drop_ins: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("agent.toml"), main).expect("main file");
        if !drop_ins.is_empty() {
            std::fs::create_dir(dir.path().join("agent.d")).expect("agent.d");
        }
        for (name, text) in drop_ins {
            std::fs::write(dir.path().join("agent.d").join(name), text).expect("drop-in");
        }
        Setup { dir }
    }

    fn main(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    fn drop_in(&self, name: &str) -> PathBuf {
        self.dir.path().join("agent.d").join(name)
    }

    fn load(&self) -> Loaded {
        AgentConfig::load_with_drop_ins(self.main()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(&self) -> String {
        let e = AgentConfig::load(self.main())
            .expect_err("config should be refused")
            .to_string();
        assert!(!e.contains('\n'), "error is not one line: {e:?}");
        e
    }
}

const MAIN: &str = "site = \"default\"\nnode = \"web-01\"\ninterval = \"10s\"\n\
                    [broker]\nurl = \"mqtt://127.0.0.1:1883\"\nkeep_alive = \"45s\"\n";

fn tcp(name: &str) -> String {
    format!("[[check]]\nname = \"{name}\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:1\"\n")
}

#[test]
fn drop_in_dir_is_beside_the_file() {
    assert_eq!(
        drop_in_dir(Path::new("/etc/tocsin/agent.toml")),
        PathBuf::from("/etc/tocsin/agent.d")
    );
    assert_eq!(drop_in_dir(Path::new("test.toml")), PathBuf::from("test.d"));
}

#[test]
fn no_drop_in_dir_is_fine_and_changes_nothing() {
    let s = Setup::new(MAIN, &[]);
    let loaded = s.load();
    assert!(loaded.drop_ins.is_empty());
    assert_eq!(loaded.drop_in_dir, s.dir.path().join("agent.d"));
    assert_eq!(loaded.drop_in_summary(), "");
    assert_eq!(
        loaded.config,
        AgentConfig::from_toml_str(MAIN).expect("valid")
    );
    // An empty drop-in directory too.
    std::fs::create_dir(s.dir.path().join("agent.d")).expect("mkdir");
    assert_eq!(s.load().config, loaded.config);
}

#[test]
fn drop_ins_apply_in_byte_order_of_their_names() {
    // Byte order: "10-" < "9-" < "Z" < "a".
    let s = Setup::new(
        MAIN,
        &[
            ("a.toml", "interval = \"50s\"\n"),
            (
                "9-x.toml",
                "interval = \"30s\"\nlabels = { from = \"9-x\" }\n",
            ),
            (
                "10-x.toml",
                "interval = \"20s\"\nlabels = { from = \"10-x\" }\n",
            ),
            ("Z.toml", "labels = { from = \"Z\" }\n"),
        ],
    );
    let loaded = s.load();
    let names: Vec<_> = loaded
        .drop_ins
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-x.toml", "9-x.toml", "Z.toml", "a.toml"]);
    assert_eq!(loaded.config.interval, Duration::from_secs(50));
    assert_eq!(loaded.config.labels["from"], "Z");
    assert_eq!(
        loaded.drop_in_summary(),
        format!(
            " (+4 drop-ins in {})",
            s.dir.path().join("agent.d").display()
        )
    );
}

#[test]
fn checks_and_devices_are_appended_in_file_order() {
    let s = Setup::new(
        &format!("{MAIN}{}", tcp("main")),
        &[
            ("10-a.toml", &format!("{}{}", tcp("a1"), tcp("a2"))),
            (
                "20-b.toml",
                &format!(
                    "{}[[device]]\nname = \"sw\"\naddress = \"10.0.0.1\"\n",
                    tcp("b")
                ),
            ),
        ],
    );
    let config = s.load().config;
    let names: Vec<_> = config.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["main", "a1", "a2", "b"]);
    assert_eq!(config.devices.len(), 1);
    assert_eq!(config.devices[0].name, "sw");
}

#[test]
fn other_values_replace_and_tables_merge_key_by_key() {
    let s = Setup::new(
        "site = \"default\"\nnode = \"web-01\"\nparents = [\"sw-1\", \"sw-2\"]\n\
         labels = { service = \"shop\", criticality = \"low\" }\n\
         [broker]\nurl = \"mqtt://127.0.0.1:1883\"\nkeep_alive = \"45s\"\n",
        &[(
            "10-enrol.toml",
            "site = \"dc1\"\nparents = [\"sw-3\"]\nlabels = { criticality = \"high\" }\n\
             [broker]\nurl = \"mqtt://mqtt.example.net:1883\"\nusername = \"web-01\"\n",
        )],
    );
    let config = s.load().config;
    assert_eq!(config.site, "dc1");
    assert_eq!(config.node, "web-01");
    // An array that is not [[check]]/[[device]] is replaced, not appended.
    assert_eq!(config.parents, ["sw-3"]);
    assert_eq!(config.labels["service"], "shop");
    assert_eq!(config.labels["criticality"], "high");
    // [broker]: the drop-in's keys win, the main file's others stay.
    assert_eq!(config.broker.url.host, "mqtt.example.net");
    assert_eq!(config.broker.username.as_deref(), Some("web-01"));
    assert_eq!(config.broker.keep_alive, Duration::from_secs(45));
    // print-config shows the merged config, and it reads back the same.
    let printed = config.to_toml_string();
    assert!(printed.contains("mqtt.example.net"), "{printed}");
    assert_eq!(
        AgentConfig::from_toml_str(&printed).expect("round trip"),
        config
    );
}

#[test]
fn merge_rules_on_tables() {
    let mut base: Table =
        toml::from_str("a = 1\nlist = [1, 2]\n[t]\nx = 1\n[t.deep]\ny = 1\n[[check]]\nn = 1\n")
            .expect("toml");
    let over: Table = toml::from_str(
        "a = \"one\"\nlist = [3]\n[t]\nz = 2\n[t.deep]\ny = 2\n[[check]]\nn = 2\n[[device]]\nd = 1\n",
    )
    .expect("toml");
    merge(&mut base, over);
    let want: Table = toml::from_str(
        "a = \"one\"\nlist = [3]\n[t]\nx = 1\nz = 2\n[t.deep]\ny = 2\n[[check]]\nn = 1\n[[check]]\nn = 2\n[[device]]\nd = 1\n",
    )
    .expect("toml");
    assert_eq!(base, want);
    // A table replaced by a value, a value by a table: the later file wins.
    let mut base: Table = toml::from_str("[labels]\nx = \"1\"\nv = 1\n").expect("toml");
    merge(
        &mut base,
        toml::from_str("labels = 5\n[v]\nk = 1\n").expect("toml"),
    );
    assert_eq!(
        base,
        toml::from_str::<Table>("labels = 5\n[v]\nk = 1\n").expect("toml")
    );
}

#[test]
fn site_may_come_from_a_drop_in_only() {
    let s = Setup::new(
        "node = \"web-01\"\n",
        &[("10-enrol.toml", "site = \"dc2\"\n")],
    );
    assert_eq!(s.load().config.site, "dc2");

    let s = Setup::new("node = \"web-01\"\n", &[]);
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: site is not set; set site = \"...\" in it or in a drop-in {}/*.toml",
            s.main().display(),
            s.dir.path().join("agent.d").display()
        )),
        "{e}"
    );
}

#[test]
fn hidden_backup_and_other_files_are_ignored() {
    let junk = "this is = = not toml\n";
    let s = Setup::new(
        MAIN,
        &[
            ("10-enrol.toml", "site = \"dc1\"\n"),
            (".10-enrol.toml.swp", junk),
            (".hidden.toml", junk),
            ("10-enrol.toml.dpkg-dist", junk),
            ("10-enrol.toml.dpkg-old", junk),
            ("10-enrol.toml~", junk),
            ("10-enrol.toml.bak", junk),
            ("README", junk),
            ("notes.TOML", junk),
        ],
    );
    let loaded = s.load();
    assert_eq!(loaded.drop_ins, [s.drop_in("10-enrol.toml")]);
    assert_eq!(loaded.config.site, "dc1");
    for (name, read) in [
        ("a.toml", true),
        (".a.toml", false),
        (".toml", false),
        ("a.toml.dpkg-new", false),
        ("toml", false),
    ] {
        assert_eq!(is_drop_in_name(OsStr::new(name)), read, "{name}");
    }
}

#[test]
fn syntax_error_names_the_drop_in_and_its_line() {
    let s = Setup::new(
        MAIN,
        &[
            ("10-enrol.toml", "site = \"dc1\"\n"),
            ("20-broken.toml", "site = \"dc1\"\n\n[broker\nurl = \"x\"\n"),
        ],
    );
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: line 3: ",
            s.drop_in("20-broken.toml").display()
        )),
        "{e}"
    );
}

#[test]
fn unknown_key_names_the_drop_in_that_has_it() {
    let s = Setup::new(
        MAIN,
        &[(
            "10-enrol.toml",
            "site = \"dc1\"\n[broker]\nusername = \"web-01\"\nport = 1883\n",
        )],
    );
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: line 4: unknown field `port`",
            s.drop_in("10-enrol.toml").display()
        )),
        "{e}"
    );
    // In a [[check]] of a drop-in, and at the top of one.
    let s = Setup::new(
        MAIN,
        &[("50-checks.toml", &format!("{}colour = 1\n", tcp("db")))],
    );
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: line 5: unknown field `colour`",
            s.drop_in("50-checks.toml").display()
        )),
        "{e}"
    );
    // The main file's own unknown key still names the main file.
    let s = Setup::new(
        "site = \"dc1\"\nintervall = \"5s\"\n",
        &[("10-enrol.toml", "site = \"dc1\"\n")],
    );
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: line 2: unknown field `intervall`",
            s.main().display()
        )),
        "{e}"
    );
}

#[test]
fn bad_value_names_the_drop_in() {
    let s = Setup::new(MAIN, &[("10-enrol.toml", "interval = \"soon\"\n")]);
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: line 1: invalid duration \"soon\"",
            s.drop_in("10-enrol.toml").display()
        )),
        "{e}"
    );
}

#[test]
fn duplicate_checks_and_devices_name_both_files() {
    let s = Setup::new(
        &format!("{MAIN}{}", tcp("db")),
        &[("10-a.toml", &tcp("other")), ("20-b.toml", &tcp("db"))],
    );
    let e = s.err();
    assert_eq!(
        e,
        format!(
            "{}: check \"tcp:db\" is defined twice (also in {})",
            s.drop_in("20-b.toml").display(),
            s.main().display()
        )
    );
    // Twice in one file: that file.
    let s = Setup::new(MAIN, &[("10-a.toml", &format!("{}{}", tcp("x"), tcp("x")))]);
    assert_eq!(
        s.err(),
        format!(
            "{}: check \"tcp:x\" is defined twice",
            s.drop_in("10-a.toml").display()
        )
    );
    // The same name with another kind is another check.
    let http = "[[check]]\nname = \"db\"\nkind = \"http\"\ntarget = \"http://127.0.0.1/\"\n";
    let s = Setup::new(&format!("{MAIN}{}", tcp("db")), &[("10-a.toml", http)]);
    assert_eq!(s.load().config.checks.len(), 2);

    let device = "[[device]]\nname = \"sw\"\naddress = \"10.0.0.1\"\n";
    let s = Setup::new(&format!("{MAIN}{device}"), &[("10-a.toml", device)]);
    assert_eq!(
        s.err(),
        format!(
            "{}: device \"sw\": the name is already used by another device (also in {})",
            s.drop_in("10-a.toml").display(),
            s.main().display()
        )
    );
}

#[test]
fn rules_of_the_merged_config_name_the_main_file_with_its_drop_ins() {
    let s = Setup::new(
        MAIN,
        &[
            ("10-enrol.toml", "site = \"dc 1\"\n"),
            ("20-labels.toml", "labels = { a = \"b\" }\n"),
        ],
    );
    assert_eq!(
        s.err(),
        format!(
            "{} (with agent.d/10-enrol.toml, agent.d/20-labels.toml): site \"dc 1\" must match [A-Za-z0-9._-]{{1,64}}",
            s.main().display()
        )
    );
    // A rule across files: password_file in a drop-in, username nowhere.
    let s = Setup::new(
        MAIN,
        &[("10-enrol.toml", "[broker]\npassword_file = \"/etc/pw\"\n")],
    );
    let e = s.err();
    assert!(
        e.ends_with("(with agent.d/10-enrol.toml): [broker] password_file is set without username"),
        "{e}"
    );
}

#[test]
fn missing_main_file_is_an_error_even_with_drop_ins() {
    let s = Setup::new(MAIN, &[("10-enrol.toml", "site = \"dc1\"\n")]);
    std::fs::remove_file(s.main()).expect("rm");
    assert_eq!(s.err(), format!("{}: no such file", s.main().display()));
}

#[test]
fn unreadable_drop_in_dir_is_an_error_naming_it() {
    // A file where the directory should be cannot be listed (root could list a chmod 000
    // directory, so this is the portable way to fail read_dir).
    let s = Setup::new(MAIN, &[]);
    let dir = s.dir.path().join("agent.d");
    std::fs::write(&dir, "not a directory").expect("write");
    let e = s.err();
    assert!(
        e.starts_with(&format!(
            "{}: cannot read the drop-in directory: ",
            dir.display()
        )) && e.ends_with("make it readable by the agent or remove it"),
        "{e}"
    );
}

#[test]
fn a_drop_in_that_cannot_be_read_is_named() {
    let s = Setup::new(MAIN, &[]);
    let dir = s.dir.path().join("agent.d");
    std::fs::create_dir_all(dir.join("sub.toml")).expect("mkdir");
    let e = s.err();
    assert!(
        e.starts_with(&format!("{}: ", dir.join("sub.toml").display())),
        "{e}"
    );
}

#[test]
fn an_alias_in_a_drop_in_replaces_the_key_of_the_main_file() {
    let setup = Setup::new(MAIN, &[("20-ka.toml", "[broker]\nkeepalive = \"60s\"\n")]);
    assert_eq!(
        setup.load().config.broker.keep_alive,
        Duration::from_secs(60)
    );
}
