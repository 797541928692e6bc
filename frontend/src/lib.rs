//! The browser entry point: hydrates the server-rendered page.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = mark)]
    fn performance_mark(name: &str);
}

#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // The moment the page became interactive, on the page's own timeline, beside Navigation
    // and Resource Timing: `make bench` (scripts/bench-page.sh) reads it.
    performance_mark("berth:hydrated");
}
