//! The web dashboard's files (`dashboards/web/`), embedded in the binary: `GET /` is
//! `index.html`, `GET /web/<file>` the other files. Only the names listed here are served, so a
//! request can never reach another file (no paths, no `..`).

/// Every file of `dashboards/web/`, by name. A test checks that the list matches the folder.
const FILES: &[(&str, &[u8])] = &[
    (
        "index.html",
        include_bytes!("../../../dashboards/web/index.html"),
    ),
    ("app.js", include_bytes!("../../../dashboards/web/app.js")),
    (
        "style.css",
        include_bytes!("../../../dashboards/web/style.css"),
    ),
    (
        "favicon.svg",
        include_bytes!("../../../dashboards/web/favicon.svg"),
    ),
];

/// The content type of a file name, by its extension; None for a kind the dashboard does not use.
fn content_type(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// One embedded file: (content type, bytes). `name` is `index.html` for `/`, else the file name
/// under `/web/`. Unknown names are None.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    let (_, bytes) = FILES.iter().find(|(n, _)| *n == name)?;
    Some((content_type(name)?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn folder() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/web")
    }

    #[test]
    fn every_file_of_the_folder_is_served_as_it_is_on_disk() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(folder()).expect("dashboards/web exists") {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().into_string().expect("UTF-8 file name");
            let (ctype, bytes) = asset(&name).unwrap_or_else(|| {
                panic!("dashboards/web/{name} is not served: add it to FILES in api/web.rs")
            });
            let on_disk = std::fs::read(entry.path()).expect("read the file");
            assert_eq!(bytes, on_disk.as_slice(), "{name}");
            let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
            let want = match ext {
                "html" => "text/html",
                "js" => "text/javascript",
                "css" => "text/css",
                "svg" => "image/svg+xml",
                other => panic!("{name}: no expected content type for .{other} in this test"),
            };
            assert!(ctype.starts_with(want), "{name}: {ctype}");
            names.push(name);
        }
        // Nothing listed that is not in the folder, and the page is there.
        assert_eq!(names.len(), FILES.len(), "{names:?}");
        assert!(names.iter().any(|n| n == "index.html"));
    }

    #[test]
    fn unknown_names_and_paths_are_none() {
        for name in [
            "",
            "nope.html",
            "../Cargo.toml",
            "../../dashboards/web/index.html",
            "..",
            "./index.html",
            "/index.html",
            "web/app.js",
            "app.js/",
            "app.js%00",
            "APP.JS",
            "index.html?x=1",
        ] {
            assert!(asset(name).is_none(), "{name:?} must not be served");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a.svg"), Some("image/svg+xml"));
        assert_eq!(content_type("a.exe"), None);
        assert_eq!(content_type("README"), None);
        let (ctype, bytes) = asset("index.html").expect("the page");
        assert_eq!(ctype, "text/html; charset=utf-8");
        let page = String::from_utf8_lossy(bytes);
        // The page loads its script and style from /web/, nothing from elsewhere.
        assert!(page.contains("/web/app.js") && page.contains("/web/style.css"));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
