//! A `jsonwebtoken` crypto provider backed by `ring`, the same library that
//! backs pingora's rustls: one crypto provider throughout the process.

/// Installs the ring provider as jsonwebtoken's process default. Idempotent.
pub fn install() {
    todo!("helper B")
}
