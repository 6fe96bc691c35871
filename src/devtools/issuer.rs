//! A development OIDC issuer: discovery, a JWKS, and `POST /token` minting
//! tokens from a JSON claims body, plus the controls tests need (rotation,
//! extra key types, crafted tokens, fetch counters, outage simulation).
//!
//! For local work and demos only: it signs whatever it is asked to.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{json, Map, Value};

use super::jws::{self, Algorithm, KeyError, SigningKey};
use super::server::Server;

/// The largest `POST /token` body accepted.
const MAX_CLAIMS_BYTES: usize = 64 * 1024;

/// The RSA key the RS/PS algorithms sign with: ring cannot generate RSA
/// keys, so it is a fixed key checked into the source. Anyone can read it
/// and mint tokens with it, which is why the banner says so.
const DEV_RSA_PKCS8: &[u8] = include_bytes!("testdata/rsa-2048.pk8");

/// How a [`DevIssuer`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevIssuerOptions {
    /// The `iss` to publish and mint with; `http://<bound address>` when `None`.
    pub issuer: Option<String>,
    /// The `aud` minted when a claims body has none.
    pub default_audience: String,
    /// `exp - iat` for minted tokens that carry no `exp`.
    pub token_lifetime: Duration,
    /// What minted tokens are signed with: a fresh key for the EC and EdDSA
    /// algorithms, the fixed development RSA key for the RS/PS ones.
    pub alg: Algorithm,
}

impl Default for DevIssuerOptions {
    fn default() -> Self {
        Self {
            issuer: None,
            default_audience: "wisp-demo".to_owned(),
            token_lifetime: Duration::from_secs(10 * 60),
            alg: Algorithm::Es256,
        }
    }
}

/// Why a development issuer operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// No published key has this `kid`.
    #[error("no key with kid {0:?}")]
    UnknownKey(String),
    /// The signing key was removed and no other was chosen.
    #[error("no current signing key: it was removed; call set_signer or rotate")]
    NoSigner,
    /// Minted claims must be a JSON object.
    #[error("claims must be a JSON object")]
    ClaimsNotObject,
    /// The key could not be made, loaded or used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A running development issuer. Clones share the same server and keys; the
/// server stops on [`DevIssuer::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct DevIssuer {
    state: Arc<IssuerState>,
    server: Arc<Server>,
}

struct IssuerState {
    issuer_url: String,
    /// `http://<where it listens>`: what discovery points clients at, since
    /// the `iss` may name a host that does not reach this process.
    served_url: String,
    default_audience: String,
    token_lifetime: Duration,
    rng: SystemRandom,
    keys: Mutex<KeyRing>,
    faults: Mutex<Faults>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    token_requests: AtomicUsize,
}

/// Published keys in publication order, and which one signs minted tokens.
#[derive(Default)]
struct KeyRing {
    keys: Vec<(String, Arc<SigningKey>)>,
    signer: Option<String>,
}

/// Simulated misbehaviour, set by tests.
#[derive(Default, Clone, Copy)]
struct Faults {
    jwks_status: Option<u16>,
    discovery_status: Option<u16>,
    jwks_delay: Option<Duration>,
}

impl DevIssuer {
    /// Binds `listen` (port 0 picks a free port) and serves on a tokio task,
    /// signing with `options.alg`. Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The bind error, or an `Other` error if the system random generator
    /// fails or the signing key cannot be made.
    pub async fn start(listen: SocketAddr, options: DevIssuerOptions) -> io::Result<Self> {
        // Bind first: the default issuer URL needs the bound port.
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let issuer_url = options
            .issuer
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        let state = Arc::new(IssuerState {
            issuer_url,
            served_url: served_url(addr),
            default_audience: options.default_audience,
            token_lifetime: options.token_lifetime,
            rng: SystemRandom::new(),
            keys: Mutex::default(),
            faults: Mutex::default(),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            token_requests: AtomicUsize::new(0),
        });
        let signer = if options.alg.is_rsa() {
            SigningKey::from_rsa_pkcs8(DEV_RSA_PKCS8, options.alg)
                .map_err(DevIssuerError::from)
                .and_then(|key| state.publish(key, true))
        } else {
            state.add_generated(options.alg, true)
        };
        signer.map_err(io::Error::other)?;
        let server = Server::serve(listener, Arc::clone(&state))?;
        Ok(Self {
            state,
            server: Arc::new(server),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The issuer URL (`iss`), without a trailing slash.
    pub fn issuer_url(&self) -> &str {
        &self.state.issuer_url
    }

    /// The JWKS URL published in the discovery document: on the address the
    /// issuer listens on (loopback for a wildcard listen), whatever `iss` is.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.state.served_url)
    }

    /// A loud multi-line warning, with the endpoints, for the CLI to print.
    pub fn banner(&self) -> String {
        let issuer = self.issuer_url();
        let served = &self.state.served_url;
        let bar = "!".repeat(72);
        let alg = self.state.keys().signer_alg();
        let fixed_key = if alg.is_some_and(Algorithm::is_rsa) {
            "!!  RSA tokens are signed with a FIXED development key that ships in wisp's\n\
             !!  source code: ANYONE can mint tokens this issuer's JWKS accepts.\n"
        } else {
            ""
        };
        format!(
            "{bar}\n\
             !!  wisp dev-issuer: FOR LOCAL DEVELOPMENT AND DEMOS ONLY\n\
             !!  It signs ANY claims for ANYONE who asks. Never trust it outside your laptop.\n\
             {fixed_key}\
             {bar}\n\
             issuer     {issuer}\n\
             alg        {alg}\n\
             discovery  {served}/.well-known/openid-configuration\n\
             jwks       {served}/jwks.json\n\
             mint       TOKEN=$(curl -s -X POST -d '{{\"sub\":\"acme:frontend:web-1\"}}' {served}/token)\n\
             configure  issuers:\n\
             \x20            - name: dev\n\
             \x20              issuer: {issuer}\n\
             \x20              jwks: {jwks}\n\
             \x20              audiences: [{audience}]\n\
             \x20              algorithms: [{alg}]\n",
            alg = alg.map_or("none", Algorithm::name),
            jwks = self.jwks_setting(),
            audience = self.state.default_audience,
        )
    }

    /// The `jwks:` setting a wisp config needs for this issuer: discovery
    /// when the `iss` is where it listens, else the served JWKS URL (an
    /// `--issuer` naming another host is not reachable for discovery).
    pub fn jwks_setting(&self) -> String {
        if self.state.issuer_url == self.state.served_url {
            "{ discovery: true }".to_owned()
        } else {
            format!("{{ uri: \"{}\" }}", self.jwks_url())
        }
    }

    /// Generates a new ES256 key, publishes it next to the old ones and makes
    /// it the signer. Returns its `kid`.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::Key`] if the system random generator fails.
    pub fn rotate(&self) -> Result<String, DevIssuerError> {
        self.state.add_generated(Algorithm::Es256, true)
    }

    /// Generates and publishes a key for `alg` (ES256, ES384 or EdDSA)
    /// without making it the signer. Returns its `kid`.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::Key`] for an RSA algorithm (use [`Self::add_rsa_key`])
    /// or if the system random generator fails.
    pub fn add_key(&self, alg: Algorithm) -> Result<String, DevIssuerError> {
        self.state.add_generated(alg, false)
    }

    /// Generates and publishes an Ed25519 (`EdDSA`) key without making it the
    /// signer. Returns its `kid`.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::Key`] if the system random generator fails.
    pub fn add_ed25519_key(&self) -> Result<String, DevIssuerError> {
        self.add_key(Algorithm::EdDsa)
    }

    /// Publishes an RSA key given as PKCS#8 DER, for an RSA `alg` (RS256/384/512,
    /// PS256/384/512), without making it the signer. Returns its `kid`.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::Key`] if ring rejects the key or `alg` is not RSA.
    pub fn add_rsa_key(&self, pkcs8_der: &[u8], alg: Algorithm) -> Result<String, DevIssuerError> {
        let key = SigningKey::from_rsa_pkcs8(pkcs8_der, alg)?;
        self.state.publish(key, false)
    }

    /// Stops publishing `kid`. Returns whether it was published. Removing the
    /// signer leaves none: minting fails until [`Self::set_signer`] or
    /// [`Self::rotate`].
    pub fn remove_key(&self, kid: &str) -> bool {
        let mut ring = self.state.keys();
        let before = ring.keys.len();
        ring.keys.retain(|(published, _)| published != kid);
        if ring.signer.as_deref() == Some(kid) {
            ring.signer = None;
        }
        ring.keys.len() != before
    }

    /// Makes the published key `kid` the signer for minted tokens.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::UnknownKey`] if no published key has that `kid`.
    pub fn set_signer(&self, kid: &str) -> Result<(), DevIssuerError> {
        let mut ring = self.state.keys();
        if ring.find(kid).is_none() {
            return Err(DevIssuerError::UnknownKey(kid.to_owned()));
        }
        ring.signer = Some(kid.to_owned());
        Ok(())
    }

    /// The signer's `kid`, if there is one.
    pub fn signer(&self) -> Option<String> {
        self.state.keys().signer.clone()
    }

    /// Mints a token exactly like `POST /token`: `claims` plus `iss`, `aud`,
    /// `iat` and `exp` unless given, signed by the signer with header
    /// `{alg, typ: "JWT", kid}`.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::ClaimsNotObject`], [`DevIssuerError::NoSigner`], or a
    /// signing failure.
    pub fn mint(&self, claims: Value) -> Result<String, DevIssuerError> {
        self.state.mint(claims)
    }

    /// Signs `header` and `claims` with the published key `kid`, exactly as
    /// given: nothing is added or checked, so tests can craft tokens with any
    /// `alg`, `crit`, `jku`, missing `kid`, non-object payload, …
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::UnknownKey`] or a signing failure.
    pub fn sign_raw(
        &self,
        kid: &str,
        header: Value,
        claims: Value,
    ) -> Result<String, DevIssuerError> {
        self.sign_raw_json(kid, &header.to_string(), &claims.to_string())
    }

    /// Like [`Self::sign_raw`] but with the header and payload as verbatim
    /// JSON text (e.g. with a repeated key, which a `Value` cannot hold).
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::UnknownKey`] or a signing failure.
    pub fn sign_raw_json(
        &self,
        kid: &str,
        header: &str,
        payload: &str,
    ) -> Result<String, DevIssuerError> {
        let key = self.state.key(kid)?;
        Ok(jws::compact(
            &key,
            header.as_bytes(),
            payload.as_bytes(),
            &self.state.rng,
        )?)
    }

    /// The base64url signature by key `kid` over arbitrary `signing_input`
    /// bytes, for tokens whose segments are themselves malformed.
    ///
    /// # Errors
    ///
    /// [`DevIssuerError::UnknownKey`] or a signing failure.
    pub fn signature(&self, kid: &str, signing_input: &[u8]) -> Result<String, DevIssuerError> {
        let key = self.state.key(kid)?;
        Ok(jws::b64(&key.sign(signing_input, &self.state.rng)?))
    }

    /// The public JWKS currently published, as JSON text.
    pub fn jwks_json(&self) -> String {
        self.state.jwks().to_string()
    }

    /// How many requests `/jwks.json` has received (failed ones included).
    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    /// How many requests the discovery document has received.
    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }

    /// How many requests `POST /token` has received.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// With `Some(code)`, `/jwks.json` answers that status (an outage); with
    /// `None` it serves keys again.
    pub fn set_jwks_status(&self, status: Option<u16>) {
        self.state.faults().jwks_status = status;
    }

    /// With `Some(code)`, the discovery document answers that status.
    pub fn set_discovery_status(&self, status: Option<u16>) {
        self.state.faults().discovery_status = status;
    }

    /// With `Some(delay)`, `/jwks.json` waits that long before answering
    /// (slow issuer; concurrent fetches overlap).
    pub fn set_jwks_delay(&self, delay: Option<Duration>) {
        self.state.faults().jwks_delay = delay;
    }

    /// Stops serving: when this returns the listener is closed (new
    /// connections are refused) and open connections are dropped. Affects
    /// every clone; the key controls keep working.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("addr", &self.addr())
            .field("issuer_url", &self.state.issuer_url)
            .field("signer", &self.signer())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .find(|(published, _)| published == kid)
            .map(|(_, key)| key)
    }

    fn signer_alg(&self) -> Option<Algorithm> {
        self.find(self.signer.as_deref()?).map(|key| key.alg())
    }
}

/// `http://<addr>`, with a wildcard address (`0.0.0.0`, `::`) replaced by
/// loopback so the URL is one a client can fetch.
fn served_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

impl IssuerState {
    fn keys(&self) -> MutexGuard<'_, KeyRing> {
        // The ring holds no invariant a panicking holder could break halfway.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self, kid: &str) -> Result<Arc<SigningKey>, DevIssuerError> {
        self.keys()
            .find(kid)
            .cloned()
            .ok_or_else(|| DevIssuerError::UnknownKey(kid.to_owned()))
    }

    fn add_generated(&self, alg: Algorithm, make_signer: bool) -> Result<String, DevIssuerError> {
        let key = SigningKey::generate(alg, &self.rng)?;
        self.publish(key, make_signer)
    }

    fn publish(&self, key: SigningKey, make_signer: bool) -> Result<String, DevIssuerError> {
        let mut ring = self.keys();
        let kid = loop {
            let mut bytes = [0u8; 6];
            self.rng.fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
            let kid: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if ring.find(&kid).is_none() {
                break kid;
            }
        };
        ring.keys.push((kid.clone(), Arc::new(key)));
        if make_signer {
            ring.signer = Some(kid.clone());
        }
        Ok(kid)
    }

    fn jwks(&self) -> Value {
        let ring = self.keys();
        let keys: Vec<Value> = ring
            .keys
            .iter()
            .map(|(kid, key)| key.public_jwk(kid))
            .collect();
        json!({ "keys": keys })
    }

    fn mint(&self, claims: Value) -> Result<String, DevIssuerError> {
        let Value::Object(mut claims) = claims else {
            return Err(DevIssuerError::ClaimsNotObject);
        };
        self.fill_defaults(&mut claims);
        let (kid, key) = {
            let ring = self.keys();
            let kid = ring.signer.clone().ok_or(DevIssuerError::NoSigner)?;
            let key = ring.find(&kid).cloned().ok_or(DevIssuerError::NoSigner)?;
            (kid, key)
        };
        let header = json!({"alg": key.alg().name(), "typ": "JWT", "kid": kid});
        let payload = Value::Object(claims).to_string();
        Ok(jws::compact(
            &key,
            header.to_string().as_bytes(),
            payload.as_bytes(),
            &self.rng,
        )?)
    }

    fn fill_defaults(&self, claims: &mut Map<String, Value>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let exp = now.saturating_add(self.token_lifetime.as_secs());
        claims
            .entry("iss")
            .or_insert_with(|| json!(self.issuer_url));
        claims
            .entry("aud")
            .or_insert_with(|| json!(self.default_audience));
        claims.entry("iat").or_insert_with(|| json!(now));
        claims.entry("exp").or_insert_with(|| json!(exp));
    }
}

mod routes;

#[cfg(test)]
mod tests;
