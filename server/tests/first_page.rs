//! The light first page over HTTP: content-hashed `/pkg` names in the shell, precompressed
//! variants picked by Accept-Encoding, a year's immutable caching, compressed HTML. Runs on a
//! small site of its own (no wasm build needed), laid out like scripts/build-site.sh does.


use std::path::Path;

use testkit::{Backend, TestDb, TestServer};

const JS: &str = "berth.0123456789abcdef.js";
const WASM: &str = "berth.fedcba9876543210.wasm";
const CSS: &str = "berth.00112233aabbccdd.css";
/// Stand-ins for what brotli and gzip would write: the server must pass the file's bytes on
/// as they are, so any bytes do.
const WASM_BR: &[u8] = b"brotli bytes of the wasm";
const WASM_GZ: &[u8] = b"gzip bytes of the wasm";
const WASM_RAW: &[u8] = b"\0asm\x01\0\0\0 plain bytes of the wasm";

fn write_site(root: &Path) {
    let pkg = root.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join(WASM), WASM_RAW).unwrap();
    std::fs::write(pkg.join(format!("{WASM}.br")), WASM_BR).unwrap();
    std::fs::write(pkg.join(format!("{WASM}.gz")), WASM_GZ).unwrap();
    std::fs::write(pkg.join(JS), "export default function init() {}\n").unwrap();
    std::fs::write(pkg.join(CSS), "body { margin: 0 }\n").unwrap();
    // No hash in the name: not cached for long.
    std::fs::write(pkg.join("berth.css"), "body { margin: 0 }\n").unwrap();
    std::fs::write(root.join("hash.txt"), "js: 0123456789abcdef\nwasm: fedcba9876543210\ncss: 00112233aabbccdd\n").unwrap();
}

async fn server_with_site() -> (TestDb, tempfile::TempDir, TestServer) {
    let db = TestDb::new(Backend::Sqlite).await;
    let site = tempfile::tempdir().unwrap();
    write_site(site.path());
    let root = site.path().display().to_string();
    let server = TestServer::start_with(&db, &[("BERTH_SITE_ROOT", &root)]).await;
    (db, site, server)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn shell_names_the_hashed_files() {
    let (_db, _site, server) = server_with_site().await;
    let page = reqwest::get(format!("{}/login", server.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"href="/pkg/berth.0123456789abcdef.js""#), "modulepreload of the hashed js: {html}");
    assert!(html.contains(r#"href="/pkg/berth.fedcba9876543210.wasm""#), "preload of the hashed wasm: {html}");
    assert!(html.contains(r#""berth.0123456789abcdef", "berth.fedcba9876543210""#), "hydration script loads both: {html}");
    assert!(html.contains(r#"href="/pkg/berth.00112233aabbccdd.css""#), "hashed stylesheet: {html}");
    assert!(!html.contains("/pkg/berth.css"), "no plain name left: {html}");
}

#[tokio::test]
async fn hashed_wasm_comes_precompressed_and_immutable() {
    let (_db, _site, server) = server_with_site().await;
    let client = reqwest::Client::new();
    let url = format!("{}/pkg/{WASM}", server.base);

    let br = client.get(&url).header("accept-encoding", "gzip, deflate, br").send().await.unwrap();
    assert_eq!(br.status(), 200);
    assert_eq!(header(&br, "content-encoding"), Some("br"));
    assert_eq!(header(&br, "content-type"), Some("application/wasm"));
    assert_eq!(header(&br, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(header(&br, "vary").map(str::to_ascii_lowercase).as_deref(), Some("accept-encoding"));
    assert_eq!(header(&br, "x-content-type-options"), Some("nosniff"));
    assert_eq!(br.bytes().await.unwrap().as_ref(), WASM_BR);

    let gz = client.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(header(&gz, "content-encoding"), Some("gzip"));
    assert_eq!(header(&gz, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(gz.bytes().await.unwrap().as_ref(), WASM_GZ);

    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&plain, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(plain.bytes().await.unwrap().as_ref(), WASM_RAW);
}

#[tokio::test]
async fn plain_names_and_missing_files_are_not_cached_for_long() {
    let (_db, _site, server) = server_with_site().await;
    let plain = reqwest::get(format!("{}/pkg/berth.css", server.base)).await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "cache-control"), Some("no-cache"));
    let gone = reqwest::get(format!("{}/pkg/berth.ffffffffffffffff.wasm", server.base)).await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(header(&gone, "cache-control"), None);
}

#[tokio::test]
async fn pages_are_compressed_when_asked() {
    let (_db, _site, server) = server_with_site().await;
    let client = reqwest::Client::new();
    let url = format!("{}/login", server.base);
    for (asked, expected) in [("br", "br"), ("gzip", "gzip"), ("gzip, deflate, br", "br")] {
        let page = client.get(&url).header("accept-encoding", asked).send().await.unwrap();
        assert_eq!(page.status(), 200, "{asked}");
        assert_eq!(header(&page, "content-encoding"), Some(expected), "asked for {asked}");
        assert_eq!(header(&page, "x-frame-options"), Some("DENY"), "the portal's headers stay");
        let body = page.bytes().await.unwrap();
        assert!(!body.windows(9).any(|w| w == b"<!DOCTYPE"), "{asked}: the body is not plain HTML");
    }
    let plain = client.get(&url).send().await.unwrap();
    assert_eq!(header(&plain, "content-encoding"), None, "no Accept-Encoding, no compression");
    assert!(plain.text().await.unwrap().starts_with("<!DOCTYPE html>"));
}
