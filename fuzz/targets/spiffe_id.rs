//! A SPIFFE ID: parsed, and a parsed one re-parses to itself.

use wisp::authn::spiffe::SpiffeId;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        let again = SpiffeId::parse(id.as_str()).expect("a parsed SPIFFE ID parses again");
        assert_eq!(again.as_str(), id.as_str());
        assert!(!id.trust_domain().is_empty());
    }
}
