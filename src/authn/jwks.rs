//! JWKS fetching and refreshing (I/O). Owned by the main session.
