// The migrations are embedded with `sqlx::migrate!`, which notices edits to the files it read
// but not a new file: rebuild when anything under migrations/ changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
