//! The TLS listener's material: server certificate and client trust bundle,
//! re-read when their files change, and the handshake callback that turns the
//! client certificate into a [`PeerIdentity`](crate::authn::svid::PeerIdentity).
