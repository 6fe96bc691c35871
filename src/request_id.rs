//! Request ids: the client's `x-request-id` when it is a sane token, else a
//! new one. The id is logged with the decision and sent upstream, so one
//! request can be followed through wisp and the service behind it.

use std::cell::Cell;

/// Longest client-sent id kept.
const MAX_LEN: usize = 128;

/// The id for a request whose `x-request-id` header is `sent` (if any): kept
/// when it is 1–128 characters of `A–Z a–z 0–9 - _ . : / + =` (UUIDs, trace
/// ids, base64), else replaced by a new one, so nothing a client sends can
/// break a log line or a header.
pub fn request_id(sent: Option<&[u8]>) -> String {
    match sent {
        Some(id) if is_sane(id) => String::from_utf8_lossy(id).into_owned(),
        _ => generate(),
    }
}

/// The id a request sent, if it sent exactly one `x-request-id`: with two,
/// which one would the upstream log? (A fresh id then replaces both.)
pub fn sent_once<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    match (values.next(), values.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

thread_local! {
    /// Per thread: a random 64-bit stream id and a counter, so ids are unique
    /// without a shared counter or a system call per request.
    static NEXT: Cell<(u64, u64)> = Cell::new((random_u64(), 0));
}

/// 32 hex digits: the thread's random stream id, then its counter.
fn generate() -> String {
    NEXT.with(|next| {
        let (stream, count) = next.get();
        next.set((stream, count.wrapping_add(1)));
        // Per request: hex by hand rather than through `fmt`.
        let mut id = String::with_capacity(32);
        for word in [stream, count] {
            for shift in (0..16).rev() {
                id.push(char::from(HEX[((word >> (4 * shift)) & 0xf) as usize]));
            }
        }
        id
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The system RNG failing is not worth failing a request over: the ids
    // of such a thread are then unique only within the process.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_client_ids_are_kept_and_others_replaced() {
        for kept in ["abc-123", "0af7651916cd43dd8448eb211c80319c", "a:b/c+d="] {
            assert_eq!(request_id(Some(kept.as_bytes())), kept);
        }
        let long = "a".repeat(129);
        for replaced in ["", "a b", "x\r\ny", "é", long.as_str(), "\"quoted\""] {
            let id = request_id(Some(replaced.as_bytes()));
            assert_ne!(id, replaced);
            assert_eq!(id.len(), 32);
        }
    }

    #[test]
    fn generated_ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| request_id(None)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn generated_ids_are_the_stream_then_the_counter_in_hex() {
        let first = generate();
        let second = generate();
        assert!(first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let stream = u64::from_str_radix(&first[..16], 16).unwrap();
        let count = u64::from_str_radix(&first[16..], 16).unwrap();
        assert_eq!(
            second,
            format!("{stream:016x}{:016x}", count.wrapping_add(1))
        );
    }
}
