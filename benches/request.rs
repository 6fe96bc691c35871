//! The proxy's per-request work before any authentication, in process: the
//! pieces every request pays, public route or not.
//!
//! - `host_normalize`: the `Host` check (RFC 9112 §3.2) on an IPv4 host with
//!   a port (what load generators and kubelet probes send) and on a
//!   Kubernetes service name;
//! - `target_parse`: the pipeline's target and host normalization (path,
//!   query, host name) for a target already in normal form;
//! - `request_id`: a fresh id for a request that brought none;
//! - `header_scan`: the `limits.header_timeout` scan over a 200-byte request
//!   header read at once.
//!
//! `cargo bench --bench request -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use wisp::limits::HeaderScan;
use wisp::pipeline::{HostField, Target};

const REQUEST: &[u8] = b"GET /api/orders?limit=5 HTTP/1.1\r\n\
Host: orders.shop.svc.cluster.local:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: application/json\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln\r\n\
X-Request-Id: 0af7651916cd43dd8448eb211c80319c\r\n\r\n";

fn request_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("host_normalize");
    for (name, host) in [
        ("ipv4_port", "127.0.0.1:18080"),
        ("service_name_port", "Orders.Shop.svc.cluster.local:8080"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| wisp::host::normalize(black_box(host.as_bytes())))
        });
    }
    group.finish();

    c.bench_function("target_parse", |b| {
        b.iter(|| {
            Target::parse(
                black_box(b"/api/orders?limit=5"),
                black_box(Some(HostField::Raw("orders.shop.svc.cluster.local"))),
            )
        })
    });

    c.bench_function("request_id", |b| {
        b.iter(|| wisp::request_id::request_id(black_box(None)))
    });

    c.bench_function("header_scan", |b| {
        b.iter(|| HeaderScan::default().feed(black_box(REQUEST)))
    });
}

criterion_group!(benches, request_path);
criterion_main!(benches);
