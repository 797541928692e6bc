//! The light first page: the site's `/pkg` files (wasm, its JavaScript glue, the stylesheet)
//! under content-hashed names, served precompressed and cached for a year, and compression
//! of what the portal renders.
//!
//! `scripts/build-site.sh` names the files `berth.<hash>.{js,wasm,css}`, writes `.br` and `.gz`
//! beside each, and records the hashes in `<site root>/hash.txt` in Leptos' format
//! (`js: <hash>` …), which `HydrationScripts` and `HashedStylesheet` read to name them in the page.

use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use leptos::config::LeptosOptions;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

/// The hash file the site build writes at the site root.
pub const HASH_FILE: &str = "hash.txt";

/// A hashed name never changes its content: browsers may keep it a year without asking again.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Anything else under `/pkg` (a site built without hashes, e.g. by `cargo leptos watch`)
/// is checked with the server on each use.
pub const REVALIDATE: &str = "no-cache";

/// Switches Leptos to the hashed names when the site build wrote a hash file. Leptos looks the
/// file up relative to the server's executable; an absolute path makes it find the one in the
/// site root wherever the binary lives (target/debug, target/release, /usr/local/bin).
pub fn with_hashed_names(mut options: LeptosOptions) -> LeptosOptions {
    let site_root = PathBuf::from(&*options.site_root);
    let site_root = if site_root.is_absolute() {
        site_root
    } else {
        std::env::current_dir().map(|dir| dir.join(&site_root)).unwrap_or(site_root)
    };
    let hash_file = site_root.join(HASH_FILE);
    if hash_file.is_file() {
        options.hash_files = true;
        options.hash_file = hash_file.display().to_string().into();
    } else {
        tracing::info!(path = %hash_file.display(), "no hash file: the site's files are served under plain names, without long caching");
    }
    options
}

/// `/<site_pkg_dir>/*`: files from the site's pkg directory, the `.br` or `.gz` variant when
/// the browser accepts it, with long caching for hashed names. Outside the session layers: a
/// static file needs no session, no identity and no database.
pub fn pkg_routes<S: Clone + Send + Sync + 'static>(options: &LeptosOptions) -> Router<S> {
    let pkg_dir = options.site_pkg_dir.trim_matches('/');
    let files = ServeDir::new(Path::new(&*options.site_root).join(pkg_dir))
        .precompressed_br()
        .precompressed_gzip();
    Router::new().nest_service(&format!("/{pkg_dir}"), files).layer(middleware::from_fn(cache_headers))
}

/// Compression of the portal's own answers (HTML pages, server-function JSON): brotli or gzip,
/// the only ones built in (tower-http features). tower-http's default predicate leaves alone
/// what is tiny, images, gRPC and server-sent event streams (`text/event-stream`), and
/// responses that already carry a `Content-Encoding`.
pub fn compression() -> CompressionLayer {
    CompressionLayer::new()
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let hashed = is_hashed_name(request.uri().path());
    let mut response = next.run(request).await;
    let found = matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED);
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if found {
        let value = if hashed { IMMUTABLE } else { REVALIDATE };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
        // The same URL answers brotli, gzip or plain bytes: shared caches must key on it.
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// `berth.0123456789abcdef.wasm`: a file name with a dot-separated part of 16 or more
/// hexadecimal digits between its stem and its extension.
pub fn is_hashed_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1].iter().any(|part| part.len() >= 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::is_hashed_name;

    #[test]
    fn hashed_names_are_told_from_plain_ones() {
        assert!(is_hashed_name("/pkg/berth.0123456789abcdef.wasm"));
        assert!(is_hashed_name("/pkg/berth.0123456789ABCDEF.css"));
        assert!(!is_hashed_name("/pkg/berth.wasm"));
        assert!(!is_hashed_name("/pkg/berth.css"));
        assert!(!is_hashed_name("/pkg/berth.0123456789abcde.js"), "15 digits are not a hash");
        assert!(!is_hashed_name("/pkg/0123456789abcdef.js"), "the hash sits between stem and extension");
        assert!(!is_hashed_name("/pkg/berth.0123456789abcdeg.js"), "g is no hex digit");
    }
}
