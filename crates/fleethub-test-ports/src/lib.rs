//! Free loopback ports for tests that start a server as a child process and must name its
//! ports on the command line before it binds them.
//!
//! Asking the kernel for port 0 and closing the socket again is racy in two ways, and CI hit
//! both shapes of it: two calls in a row can get the same port back (a server was once started
//! with `--mqtt-port P --https-port P`), and the port lies in the ephemeral range, so any
//! outgoing connection made before the server binds may take it as its source port.
//!
//! [`free_port_on`] therefore picks ports below the ephemeral range (read from
//! `/proc/sys/net/ipv4/ip_local_port_range`), starting at a random place, checks that each can
//! be bound right now, and never hands out the same port twice in one process. Test processes
//! running side by side start at different random places, so they rarely even probe the same
//! ports; a port one of them has bound fails the bind check in the others.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// The lowest port handed out: above the registered ports that system services commonly use.
const LOWEST: u16 = 10_000;

/// Ports used when the kernel's ephemeral range cannot be read.
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

static HANDED_OUT: Mutex<Option<HashSet<(IpAddr, u16)>>> = Mutex::new(None);

/// A port on 127.0.0.1 that is free now and that this process has not handed out before.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A port on `ip` that is free now and that this process has not handed out before for `ip`.
///
/// # Panics
/// When no port below the ephemeral range can be bound on `ip`.
pub fn free_port_on(ip: IpAddr) -> u16 {
    let highest = ephemeral_low().saturating_sub(1).max(LOWEST + 1);
    let span = u32::from(highest - LOWEST) + 1;
    let start = random() % span;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for step in 0..span {
        let port = LOWEST + ((start + step) % span) as u16;
        if handed_out.contains(&(ip, port)) {
            continue;
        }
        if TcpListener::bind((ip, port)).is_ok() {
            handed_out.insert((ip, port));
            return port;
        }
    }
    panic!("no free port between {LOWEST} and {highest} on {ip}");
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), where source ports
/// of outgoing connections come from.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|low| *low > LOWEST + 1)
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

/// A random number from the standard library's per-process hash seed, so that test processes
/// started side by side begin their search at different ports.
fn random() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        let low = ephemeral_low();
        for port in &ports {
            assert!(
                (LOWEST..low).contains(port),
                "{port} outside {LOWEST}..{low}"
            );
        }
        let listener = TcpListener::bind(("127.0.0.1", ports[0]));
        assert!(listener.is_ok(), "a handed-out port could not be bound");
    }
}
