// `sqlx::migrate!` embeds the migration files at build time; a new file in
// either directory must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
