//! The status page (`GET /` and its files under `/ui/`), compiled into the binary so a fresh
//! install serves it with no npm or files at run time.
//!
//! The sources are in `web/`: `index.html`, `app.js`, `style.css`, and `vendor/mpegts.js`,
//! the browser FLV player copied byte for byte from the npm package that
//! `web/package-lock.json` pins (`tests/status_page.rs` checks the copy against `npm ci`).
//! These files hold no data, so they need no token; the page's data calls do.

use super::http::Response;

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_bytes!("../../web/index.html") },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/ui/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/ui/mpegts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/mpegts.js"),
    },
];

/// Whether `path` is one of the page's files (`/index.html` too).
pub fn is_asset(path: &str) -> bool {
    find(path).is_some()
}

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The file at `path`, or 404. `no-cache`: a browser revalidates, so an upgraded server's page
/// is seen at the next load.
pub fn serve(path: &str) -> Response {
    match find(path) {
        Some(asset) => Response {
            status: 200,
            content_type: asset.content_type,
            headers: vec![("Cache-Control", "no-cache".into()), ("X-Content-Type-Options", "nosniff".into())],
            body: asset.body.to_vec(),
            close: false,
        },
        None => Response::error(404, "no such file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_their_types() {
        let page = serve("/");
        assert_eq!((page.status, page.content_type), (200, "text/html; charset=utf-8"));
        let html = String::from_utf8(page.body).unwrap();
        // Every file the page loads is one this module serves.
        for src in ["/ui/style.css", "/ui/mpegts.js", "/ui/app.js"] {
            assert!(html.contains(&format!("\"{src}\"")), "{src}");
            assert!(is_asset(src), "{src}");
        }
        assert_eq!(serve("/index.html").body, serve("/").body);
        assert!(serve("/ui/mpegts.js").body.len() > 100_000);
        assert_eq!(serve("/ui/nothing.js").status, 404);
        assert!(!is_asset("/ui/") && !is_asset("/api/streams"));
    }
}
