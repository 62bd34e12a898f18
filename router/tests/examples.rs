//! The router and reservation-service examples in `packaging/examples/`
//! load with their own schemas and say what their comments claim (the
//! agent's and key manager's examples are checked in config/tests).

use std::path::{Path, PathBuf};

use von_router::config::{RouterConfig, ServiceConfig};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/examples")
        .join(name)
}

#[test]
fn router_example() {
    let c = RouterConfig::load(&example("router.toml")).unwrap();
    assert_eq!(c.name, "r1");
    assert_eq!(c.listen.to_string(), "10.0.0.1:7300");
    assert!(
        c.key.is_none(),
        "the example must not show the retired HMAC key"
    );
    assert!(c.ca.is_some() && c.cert.is_some() && c.tls_key.is_some());
    assert_eq!(c.links.len(), 1);
    assert_eq!(c.links[0].dev, "sha");
    assert_eq!(c.links[0].capacity.bits_per_second(), 100_000_000);
}

#[test]
fn reserve_example() {
    let c = ServiceConfig::load(&example("reserve.toml")).unwrap();
    assert!(
        c.key.is_none(),
        "the example must not show the retired HMAC key"
    );
    let etcd = c.etcd.as_ref().expect("the example runs on etcd");
    assert_eq!(etcd.endpoints.len(), 3);
    assert_eq!(etcd.replica, "rs1");
    assert_eq!(c.routers.len(), 1);
    assert_eq!(c.routers[0].name, "r1");
    // The router entry dials the router example's listen address.
    let router = RouterConfig::load(&example("router.toml")).unwrap();
    assert_eq!(c.routers[0].addr, router.listen);
}
