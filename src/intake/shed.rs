//! Shedding a tenant over its `max-connections` in the kernel.
//!
//! A RAW listener refuses a connection of a tenant at its limit with a
//! reset in its accept loop, but by then the kernel has done the whole
//! handshake and the connection has waited in the listener's accept queue,
//! which every tenant shares: a tenant's flood puts other tenants'
//! connections behind thousands of its own, and every refused connection
//! costs a handshake, an accept and a reset on both ends.
//!
//! So the first refusal of a tenant at its limit also sheds the tenant on
//! that listening socket: a classic BPF socket filter drops the packets of
//! the tenant's ranges there (its SYNs never reach the queue; its senders
//! retry them after the kernel's backoff, as they would for a lost
//! packet), and the tenant's connections already admitted carry on (each
//! admitted socket has the filter it inherited detached). The shed lasts at
//! least [`SHED_FOR`] and ends at the first check ([`SHED_CHECK_EVERY`])
//! after it that finds the tenant under its limit again; a new routing
//! snapshot (a reload) ends every shed, as ranges may have changed.
//! Listeners that read a PROXY header see only the balancer's address and
//! never shed; nor do LPD and IPP listeners, which answer a tenant at its
//! limit in their protocols.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use socket2::{SockFilter, SockRef};

use crate::config::ids::ListenerName;
use crate::snapshot::{Routed, Snapshot};

/// Shortest time a tenant at its `max-connections` stays shed.
pub const SHED_FOR: Duration = Duration::from_secs(1);

/// While a tenant is shed, how often its connections are counted again.
pub const SHED_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Longest socket filter the kernel takes (`BPF_MAXINSNS`). Tenants whose
/// ranges together need more are not shed (their refusals stay resets).
pub const MAX_FILTER_INSTRUCTIONS: usize = 4096;

/// Where a socket filter reads the packet's network header (`SKF_NET_OFF`).
const NET_OFF: u32 = (-0x10_0000i32) as u32;
/// Offset of the source address in an IPv4 and an IPv6 header.
const V4_SOURCE: u32 = 12;
const V6_SOURCE: u32 = 8;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// A socket filter that drops packets from `ranges` (those of the socket's
/// family: IPv6 when `v6`) and keeps all others; `None` when no range is of
/// that family or the program would be longer than the kernel takes.
pub fn program(v6: bool, ranges: &[IpNet]) -> Option<Vec<Insn>> {
    let mut p = Vec::new();
    for net in ranges {
        // The 32-bit words of the source address the prefix covers, each
        // with the mask of its covered bits.
        let (source, words): (u32, Vec<(u32, u32)>) = match (net, v6) {
            (IpNet::V4(n), false) => (
                V4_SOURCE,
                vec![(u32::from(n.network()), u32::from(n.prefix_len()))],
            ),
            (IpNet::V6(n), true) => {
                let bits = u128::from(n.network());
                let len = u32::from(n.prefix_len());
                let words = (0..4)
                    .map(|i| {
                        (
                            (bits >> (96 - 32 * i)) as u32,
                            len.saturating_sub(32 * i).min(32),
                        )
                    })
                    .filter(|&(_, covered)| covered > 0)
                    .collect();
                (V6_SOURCE, words)
            }
            _ => continue,
        };
        // Per word: load it, mask it (a partial word), compare; a word that
        // differs jumps past this range's drop; all equal: drop. (A /0
        // range drops everything.)
        let masks: Vec<u32> = words
            .iter()
            .map(|&(_, covered)| u32::MAX.checked_shl(32 - covered).unwrap_or(0))
            .collect();
        let block_len: usize = masks
            .iter()
            .map(|&m| if m == u32::MAX { 2 } else { 3 })
            .sum::<usize>()
            + 1;
        let mut at = 0;
        for (i, (&(word, _), &mask)) in words.iter().zip(&masks).enumerate() {
            p.push(Insn(LD_W_ABS, 0, 0, NET_OFF + source + 4 * i as u32));
            at += 1;
            if mask != u32::MAX {
                p.push(Insn(AND_K, 0, 0, mask));
                at += 1;
            }
            at += 1;
            // Equal: on to the next instruction. Not equal: past the drop.
            p.push(Insn(
                JEQ_K,
                0,
                u8::try_from(block_len - at).ok()?,
                word & mask,
            ));
        }
        p.push(Insn(RET_K, 0, 0, 0));
        if p.len() + 1 > MAX_FILTER_INSTRUCTIONS {
            return None;
        }
    }
    if p.is_empty() {
        return None;
    }
    p.push(Insn(RET_K, 0, 0, u32::MAX));
    Some(p)
}

/// A classic BPF instruction: opcode, jump if true, jump if false, operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn(pub u16, pub u8, pub u8, pub u32);

/// One tenant shed on a listener.
struct Shed {
    routed: Routed,
    since: Instant,
}

/// The tenants shed on one listening socket (see the module's text).
pub struct Shedder {
    listener: ListenerName,
    v6: bool,
    shed: Vec<Shed>,
    /// A filter was attached at some time: admitted sockets may carry one.
    ever: bool,
    /// When the sheds are checked next, while there are any.
    due: Option<tokio::time::Instant>,
}

impl Shedder {
    /// For the listening socket of `listener` (IPv6 when `v6`).
    pub fn new(listener: ListenerName, v6: bool) -> Shedder {
        Shedder {
            listener,
            v6,
            shed: Vec::new(),
            ever: false,
            due: None,
        }
    }

    /// When the next check is due, while a tenant is shed.
    pub fn next_check(&self) -> Option<tokio::time::Instant> {
        self.due
    }

    /// `routed`'s tenant was refused at its max-connections: shed it.
    pub fn over_limit(&mut self, socket: SockRef<'_>, routed: &Routed) {
        let id = &routed.tenant().id;
        if let Some(s) = self.shed.first() {
            if !Arc::ptr_eq(&s.routed.snapshot, &routed.snapshot) {
                // Routed with another snapshot: start over with this one.
                self.shed.clear();
            }
        }
        if self.shed.iter().any(|s| s.routed.tenant().id == *id) {
            return;
        }
        self.shed.push(Shed {
            routed: routed.clone(),
            since: Instant::now(),
        });
        self.due
            .get_or_insert_with(|| tokio::time::Instant::now() + SHED_CHECK_EVERY);
        if self.apply(socket) {
            tracing::warn!(listener = %self.listener, tenant = %id, "tenant at max-connections: its new connections to this listener are dropped in the kernel until it is under its limit again (at least {SHED_FOR:?})");
        }
    }

    /// Ends the sheds that are due: at least [`SHED_FOR`] old with their
    /// tenant under its limit, or made with an earlier snapshot than
    /// `current`.
    pub fn check(&mut self, socket: SockRef<'_>, current: &Arc<Snapshot>) {
        let before = self.shed.len();
        self.shed.retain(|s| {
            let rt = s.routed.runtime();
            let under = rt.connections.load(std::sync::atomic::Ordering::Acquire)
                < s.routed.tenant().limits.max_connections;
            let keep = Arc::ptr_eq(&s.routed.snapshot, current)
                && (s.since.elapsed() < SHED_FOR || !under);
            if !keep {
                tracing::info!(listener = %self.listener, tenant = %s.routed.tenant().id, "tenant no longer shed: its connections reach the listener again");
            }
            keep
        });
        if self.shed.len() != before {
            self.apply(socket);
        }
        self.due = (!self.shed.is_empty()).then(|| tokio::time::Instant::now() + SHED_CHECK_EVERY);
    }

    /// An admitted connection's socket: drops the filter it inherited from
    /// the listening socket, so its own packets always pass.
    pub fn admitted(&self, socket: SockRef<'_>) {
        if self.ever {
            let _ = socket.detach_filter();
        }
    }

    /// Sets the listening socket's filter for the tenants shed now (none:
    /// detached). False when no filter sheds them: their ranges need a
    /// longer program than the kernel takes, or the socket refused it
    /// (their refusals stay resets; the shed is kept, so a flood does not
    /// try again with each refusal).
    fn apply(&mut self, socket: SockRef<'_>) -> bool {
        let ranges: Vec<IpNet> = self
            .shed
            .iter()
            .flat_map(|s| s.routed.tenant().ranges.iter().copied())
            .collect();
        let program = program(self.v6, &ranges);
        let result = match &program {
            Some(p) => {
                self.ever = true;
                let p: Vec<SockFilter> = p
                    .iter()
                    .map(|&Insn(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
                    .collect();
                socket.attach_filter(&p)
            }
            None if self.ever => socket.detach_filter(),
            None => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(listener = %self.listener, error = %e, "could not set the listener's socket filter; tenants over their limit are refused by reset only");
            return false;
        }
        if program.is_none() && !self.shed.is_empty() {
            tracing::warn!(listener = %self.listener, "the ranges of the tenants at max-connections need a longer socket filter than the kernel takes; they are refused by reset only");
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a program of [`program`]'s instructions on a packet's network
    /// header, as the kernel would: the value it returns (0: dropped).
    fn run(p: &[Insn], header: &[u8]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let Insn(code, jt, jf, k) = p[pc];
            pc += 1;
            match code {
                LD_W_ABS => {
                    let at = k.wrapping_sub(NET_OFF) as usize;
                    a = u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
                }
                AND_K => a &= k,
                JEQ_K => pc += usize::from(if a == k { jt } else { jf }),
                RET_K => return k,
                other => panic!("opcode {other:#x} not expected"),
            }
        }
    }

    fn v4_header(src: std::net::Ipv4Addr) -> Vec<u8> {
        let mut h = vec![0x45u8; 20];
        h[12..16].copy_from_slice(&src.octets());
        h
    }

    fn v6_header(src: std::net::Ipv6Addr) -> Vec<u8> {
        let mut h = vec![0x60u8; 40];
        h[8..24].copy_from_slice(&src.octets());
        h
    }

    #[test]
    fn the_filter_drops_exactly_the_shed_ranges() {
        let ranges: Vec<IpNet> = [
            "10.1.0.0/16",
            "192.168.7.9/32",
            "172.16.0.0/12",
            "2001:db8:aa::/48",
            "2001:db8:bb:cc:dd::/80",
            "fd00::1/128",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        let v4 = program(false, &ranges).unwrap();
        for (ip, dropped) in [
            ("10.1.255.3", true),
            ("10.2.0.1", false),
            ("192.168.7.9", true),
            ("192.168.7.8", false),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("127.0.0.1", false),
        ] {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(run(&v4, &v4_header(ip)) == 0, dropped, "{ip}");
        }
        let v6 = program(true, &ranges).unwrap();
        for (ip, dropped) in [
            ("2001:db8:aa:1::5", true),
            ("2001:db8:ab::5", false),
            ("2001:db8:bb:cc:dd:1::1", true),
            ("2001:db8:bb:cc:de::1", false),
            ("fd00::1", true),
            ("fd00::2", false),
            ("::1", false),
        ] {
            let ip: std::net::Ipv6Addr = ip.parse().unwrap();
            assert_eq!(run(&v6, &v6_header(ip)) == 0, dropped, "{ip}");
        }
        // No range of the socket's family: no filter.
        assert!(program(true, &ranges[..3]).is_none());
        // A /0 drops everything of its family.
        let all = program(false, &["0.0.0.0/0".parse().unwrap()]).unwrap();
        assert_eq!(run(&all, &v4_header("8.8.8.8".parse().unwrap())), 0);
        // Too many ranges for the kernel: no filter.
        let many: Vec<IpNet> = (0..2000u32)
            .map(|i| IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(i << 8), 24).unwrap()))
            .collect();
        assert!(program(false, &many).is_none());
        assert!(program(false, &many[..1000]).is_some_and(|p| p.len() <= MAX_FILTER_INSTRUCTIONS));
    }
}
