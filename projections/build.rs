//! Rebuilds the crate when a migration changes, because `sqlx::migrate!` embeds the SQL files
//! at compile time.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=sqlite-migrations");
}
