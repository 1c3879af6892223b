//! cli.toml: the CLI's own settings (API address, token, actor) and how the command line, the
//! environment, the file and the defaults combine: flag > environment > file > default.
//!
//! The file is `$XDG_CONFIG_HOME/tocsin/cli.toml` (else `~/.config/tocsin/cli.toml`), or the
//! one named by `--config` / `TOCSIN_CONFIG`. A missing default file is fine; a missing named
//! one is an error. The token never shows in a Debug output or an error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::CliError;

/// Where the API is when nothing says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// The keys of cli.toml.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// Collector API address, e.g. `http://tocsin.example:8080`.
    pub api: Option<Spanned<String>>,
    /// File holding the bearer token (relative: to the directory of cli.toml; `~/` expands).
    pub token_file: Option<Spanned<PathBuf>>,
    /// The bearer token itself (prefer token_file; keep the file private).
    pub token: Option<Spanned<String>>,
    /// The name for the audit trail (default: $USER).
    pub actor: Option<Spanned<String>>,
}

impl std::fmt::Debug for CliConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliConfig")
            .field("api", &self.api.as_ref().map(|s| s.get_ref()))
            .field("token_file", &self.token_file.as_ref().map(|s| s.get_ref()))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("actor", &self.actor.as_ref().map(|s| s.get_ref()))
            .finish()
    }
}

/// A cli.toml that was read, and where from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: CliConfig,
    /// Group or others may read the file although it holds a token.
    pub readable_by_others: bool,
}

/// The default place: `$XDG_CONFIG_HOME/tocsin/cli.toml` when that is set to an absolute path
/// (the XDG rule), else `$HOME/.config/tocsin/cli.toml`; None without either.
pub fn default_path(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    let base = match xdg_config_home.map(Path::new) {
        Some(x) if x.is_absolute() => x.to_path_buf(),
        _ => Path::new(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("tocsin").join("cli.toml"))
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

fn bad(path: &Path, text: &str, offset: Option<usize>, message: &str) -> CliError {
    let message = message.trim().replace('\n', " ");
    CliError::Config(match offset {
        Some(o) => format!("{}:{}: {message}", path.display(), line_of(text, o)),
        None => format!("{}: {message}", path.display()),
    })
}

/// Parse cli.toml; errors are one line `path:line: message`.
pub fn parse(path: &Path, text: &str) -> Result<CliConfig, CliError> {
    let config: CliConfig = toml::from_str(text)
        .map_err(|e| bad(path, text, e.span().map(|s| s.start), e.message()))?;
    for (key, value) in [
        ("api", &config.api),
        ("actor", &config.actor),
        ("token", &config.token),
    ] {
        if let Some(v) = value
            && v.get_ref().trim().is_empty()
        {
            return Err(bad(
                path,
                text,
                Some(v.span().start),
                &format!("{key} is empty"),
            ));
        }
    }
    if let Some(api) = &config.api
        && !api.get_ref().contains("://")
    {
        return Err(bad(
            path,
            text,
            Some(api.span().start),
            "api must be a URL like http://127.0.0.1:8080",
        ));
    }
    if let (Some(_), Some(token)) = (&config.token_file, &config.token) {
        return Err(bad(
            path,
            text,
            Some(token.span().start),
            "set token or token_file, not both",
        ));
    }
    Ok(config)
}

/// Read the file named by `--config`/`TOCSIN_CONFIG` (must exist) or else the default one
/// (may be missing).
pub fn load(
    explicit: Option<&Path>,
    default: Option<&Path>,
) -> Result<Option<LoadedConfig>, CliError> {
    let (path, required) = match (explicit, default) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => return Ok(None),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(CliError::Config(format!(
                "{}: cannot read the CLI config: {e}",
                path.display()
            )));
        }
    };
    let config = parse(path, &text)?;
    Ok(Some(LoadedConfig {
        path: path.to_path_buf(),
        readable_by_others: config.token.is_some() && readable_by_others(path),
        config,
    }))
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

/// What the command line and the environment said (None: not given; empty counts as not given).
#[derive(Default, Clone)]
pub struct Overrides {
    /// `--api`
    pub api_flag: Option<String>,
    /// `TOCSIN_API`
    pub api_env: Option<String>,
    /// `--token-file`
    pub token_file_flag: Option<PathBuf>,
    /// `TOCSIN_TOKEN_FILE`
    pub token_file_env: Option<PathBuf>,
    /// `TOCSIN_TOKEN`
    pub token_env: Option<String>,
    /// `--actor`
    pub actor_flag: Option<String>,
    /// `TOCSIN_ACTOR`
    pub actor_env: Option<String>,
    /// `USER`: the actor when nothing else names one.
    pub user_env: Option<String>,
    /// `HOME`, for `~/` in cli.toml's token_file.
    pub home: Option<PathBuf>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("api_flag", &self.api_flag)
            .field("api_env", &self.api_env)
            .field("token_file_flag", &self.token_file_flag)
            .field("token_file_env", &self.token_file_env)
            .field("token_env", &self.token_env.as_ref().map(|_| "<set>"))
            .field("actor_flag", &self.actor_flag)
            .field("actor_env", &self.actor_env)
            .field("user_env", &self.user_env)
            .finish_non_exhaustive()
    }
}

impl Overrides {
    /// The environment part from the process environment (flags are set by the caller).
    pub fn from_env() -> Overrides {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Overrides {
            api_env: var("TOCSIN_API"),
            token_file_env: var("TOCSIN_TOKEN_FILE").map(PathBuf::from),
            token_env: var("TOCSIN_TOKEN"),
            actor_env: var("TOCSIN_ACTOR"),
            user_env: var("USER"),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            ..Overrides::default()
        }
    }
}

/// What the CLI uses in the end.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub api: String,
    pub token: Option<String>,
    pub actor: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api", &self.api)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("actor", &self.actor)
            .finish()
    }
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A token_file from cli.toml: `~/` from HOME, relative to the file's directory.
fn config_relative(file: &Path, config: &Path, home: Option<&Path>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (file.strip_prefix("~"), home) {
        return home.join(rest);
    }
    if file.is_relative()
        && let Some(dir) = config.parent()
    {
        return dir.join(file);
    }
    file.to_path_buf()
}

/// Combine: flag > environment > cli.toml > default. For the token: `--token-file`, then
/// `TOCSIN_TOKEN_FILE`, then `TOCSIN_TOKEN`, then cli.toml's `token_file` or `token`.
pub fn resolve(o: &Overrides, config: Option<&LoadedConfig>) -> Result<Settings, CliError> {
    let file = config.map(|c| &c.config);
    let from_file = |v: Option<&Spanned<String>>| v.map(|s| s.get_ref().trim().to_string());
    let api = nonempty(&o.api_flag)
        .or_else(|| nonempty(&o.api_env))
        .or_else(|| from_file(file.and_then(|f| f.api.as_ref())))
        .unwrap_or_else(|| DEFAULT_API.to_string());
    let token = if let Some(path) = o.token_file_flag.as_ref().or(o.token_file_env.as_ref()) {
        super::token_from(Some(path.as_path()), None).map_err(CliError::Config)?
    } else if let Some(t) = nonempty(&o.token_env) {
        Some(t)
    } else if let Some(c) = config {
        match (&c.config.token_file, &c.config.token) {
            (Some(path), _) => {
                let path = config_relative(path.get_ref(), &c.path, o.home.as_deref());
                super::token_from(Some(path.as_path()), None).map_err(|e| {
                    CliError::Config(format!("{e} (token_file in {})", c.path.display()))
                })?
            }
            (None, Some(t)) => Some(t.get_ref().trim().to_string()),
            (None, None) => None,
        }
    } else {
        None
    };
    let actor = nonempty(&o.actor_flag)
        .or_else(|| nonempty(&o.actor_env))
        .or_else(|| from_file(file.and_then(|f| f.actor.as_ref())))
        .or_else(|| nonempty(&o.user_env));
    Ok(Settings { api, token, actor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn default_path_follows_xdg() {
        let p =
            |x: Option<&str>, h: Option<&str>| default_path(x.map(OsStr::new), h.map(OsStr::new));
        assert_eq!(
            p(Some("/x/cfg"), Some("/home/ann")),
            Some(PathBuf::from("/x/cfg/tocsin/cli.toml"))
        );
        assert_eq!(
            p(None, Some("/home/ann")),
            Some(PathBuf::from("/home/ann/.config/tocsin/cli.toml"))
        );
        // Relative or empty XDG_CONFIG_HOME is ignored, as the spec says.
        assert_eq!(
            p(Some("rel"), Some("/home/ann")),
            Some(PathBuf::from("/home/ann/.config/tocsin/cli.toml"))
        );
        assert_eq!(
            p(Some(""), Some("/home/ann")),
            Some(PathBuf::from("/home/ann/.config/tocsin/cli.toml"))
        );
        assert_eq!(p(None, None), None);
    }

    #[test]
    fn bad_files_name_file_and_line() {
        let path = Path::new("/etc/cli.toml");
        for (text, want) in [
            (
                "api = \"http://a:1\"\n\napii = \"x\"\n",
                "/etc/cli.toml:3: unknown field `apii`",
            ),
            ("actor = \"ann\"\napi = 5\n", "/etc/cli.toml:2: "),
            ("this is not toml", "/etc/cli.toml:1: "),
            ("\n\nactor = \"\"\n", "/etc/cli.toml:3: actor is empty"),
            (
                "api = \"127.0.0.1:8080\"\n",
                "/etc/cli.toml:1: api must be a URL like http://127.0.0.1:8080",
            ),
            (
                "token_file = \"t\"\n# secret\ntoken = \"s3cret\"\n",
                "/etc/cli.toml:3: set token or token_file, not both",
            ),
        ] {
            let err = parse(path, text).expect_err(text);
            let msg = err.to_string();
            assert!(msg.starts_with(want), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
            assert_eq!(err.exit_code(), 2);
        }
        let ok = parse(
            path,
            "api = \"http://tocsin:8080\"\ntoken = \"s3cret\"\nactor = \"ann\"\n",
        )
        .expect("valid");
        assert_eq!(
            ok.api.as_ref().map(|a| a.get_ref().as_str()),
            Some("http://tocsin:8080")
        );
        let debug = format!("{ok:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("<set>"),
            "{debug}"
        );
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let nope = dir.path().join("nope.toml");
        // The default file may be missing ...
        assert!(load(None, Some(&nope)).expect("fine").is_none());
        assert!(load(None, None).expect("fine").is_none());
        // ... a named one may not.
        let err = load(Some(&nope), None).expect_err("named and missing");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().starts_with(&nope.display().to_string()),
            "{err}"
        );
        // The named one wins over the default.
        let named = write(dir.path(), "named.toml", "api = \"http://named:1\"\n");
        let default = write(dir.path(), "default.toml", "api = \"http://default:1\"\n");
        let loaded = load(Some(&named), Some(&default))
            .expect("ok")
            .expect("some");
        assert_eq!(loaded.path, named);
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = write(
            dir.path(),
            "cli.toml",
            "api = \"http://file:1\"\nactor = \"file-actor\"\ntoken_file = \"token\"\n",
        );
        write(dir.path(), "token", "file-token\n");
        let loaded = load(Some(&cfg), None).expect("load");
        let env_token = write(dir.path(), "env.token", "env-file-token\n");
        let flag_token = write(dir.path(), "flag.token", "flag-token\n");

        // Nothing at all: the defaults.
        let none = resolve(&Overrides::default(), None).expect("resolve");
        assert_eq!(
            none,
            Settings {
                api: DEFAULT_API.into(),
                token: None,
                actor: None
            }
        );
        // The file alone; its relative token_file is next to it.
        let file = resolve(
            &Overrides {
                user_env: Some("user".into()),
                ..Overrides::default()
            },
            loaded.as_ref(),
        )
        .expect("resolve");
        assert_eq!(
            file,
            Settings {
                api: "http://file:1".into(),
                token: Some("file-token".into()),
                actor: Some("file-actor".into())
            }
        );
        // The environment beats the file.
        let env = Overrides {
            api_env: Some("http://env:1".into()),
            token_env: Some("env-token".into()),
            actor_env: Some("env-actor".into()),
            user_env: Some("user".into()),
            ..Overrides::default()
        };
        let s = resolve(&env, loaded.as_ref()).expect("resolve");
        assert_eq!(s.api, "http://env:1");
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.actor.as_deref(), Some("env-actor"));
        // TOCSIN_TOKEN_FILE beats TOCSIN_TOKEN.
        let s = resolve(
            &Overrides {
                token_file_env: Some(env_token.clone()),
                ..env.clone()
            },
            loaded.as_ref(),
        )
        .expect("resolve");
        assert_eq!(s.token.as_deref(), Some("env-file-token"));
        // Flags beat everything.
        let flags = Overrides {
            api_flag: Some("http://flag:1".into()),
            token_file_flag: Some(flag_token),
            actor_flag: Some("flag-actor".into()),
            token_file_env: Some(env_token),
            ..env.clone()
        };
        let s = resolve(&flags, loaded.as_ref()).expect("resolve");
        assert_eq!(
            s,
            Settings {
                api: "http://flag:1".into(),
                token: Some("flag-token".into()),
                actor: Some("flag-actor".into())
            }
        );
        // Empty values count as not given.
        let s = resolve(
            &Overrides {
                api_env: Some("  ".into()),
                token_env: Some(String::new()),
                ..Overrides::default()
            },
            loaded.as_ref(),
        )
        .expect("resolve");
        assert_eq!(s.api, "http://file:1");
        assert_eq!(s.token.as_deref(), Some("file-token"));
        // $USER is the last resort for the actor.
        let s = resolve(
            &Overrides {
                user_env: Some("user".into()),
                ..Overrides::default()
            },
            None,
        )
        .expect("resolve");
        assert_eq!(s.actor.as_deref(), Some("user"));
    }

    #[test]
    fn tokens_in_the_file_and_secrecy() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = write(dir.path(), "cli.toml", "token = \" s3cret \"\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let loaded = load(Some(&cfg), None).expect("load").expect("some");
            assert!(loaded.readable_by_others);
            std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let loaded = load(Some(&cfg), None).expect("load");
        assert!(loaded.as_ref().is_some_and(|l| !l.readable_by_others));
        let s = resolve(&Overrides::default(), loaded.as_ref()).expect("resolve");
        assert_eq!(s.token.as_deref(), Some("s3cret"));
        for debug in [
            format!("{s:?}"),
            format!("{loaded:?}"),
            format!(
                "{:?}",
                Overrides {
                    token_env: Some("s3cret".into()),
                    ..Overrides::default()
                }
            ),
        ] {
            assert!(!debug.contains("s3cret"), "{debug}");
        }
        // `~/` in token_file is the home directory; a missing token file names the config.
        let cfg = write(dir.path(), "home.toml", "token_file = \"~/tok\"\n");
        write(dir.path(), "tok", "home-token");
        let loaded = load(Some(&cfg), None).expect("load");
        let o = Overrides {
            home: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(&o, loaded.as_ref())
                .expect("resolve")
                .token
                .as_deref(),
            Some("home-token")
        );
        let cfg = write(
            dir.path(),
            "gone.toml",
            "token_file = \"/nonexistent/tok\"\n",
        );
        let loaded = load(Some(&cfg), None).expect("load");
        let err = resolve(&Overrides::default(), loaded.as_ref()).expect_err("no token file");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("gone.toml"), "{err}");
    }
}
