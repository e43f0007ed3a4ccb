//! Address → tenant by longest-prefix match (pure: no I/O).
//!
//! Ranges of a config never overlap (config validation refuses overlaps), so
//! the longest matching prefix is the only matching one, and a flattened,
//! sorted array of `[start, end]` intervals answers exactly what a prefix
//! trie answers. [`RoutingTable`] is that array: separate `start`, `end` and
//! `tenant` vectors, searched with a binary search on `start`; `benches/routing.rs`
//! measures it against [`TrieTable`] (the `prefix-trie` crate), and a property
//! test checks that the two always agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Index of a tenant in the snapshot's tenant list.
pub type TenantIdx = u32;

/// Canonicalises a peer address: an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`)
/// is the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A routing hit: the tenant and the range that matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The tenant the address belongs to.
    pub tenant: TenantIdx,
    /// The range that contains the address.
    pub range: IpNet,
}

/// Sorted interval arrays for IPv4 and IPv6; exact for non-overlapping ranges.
#[derive(Debug, Default, Clone)]
pub struct RoutingTable {
    v4: Intervals<u32>,
    v6: Intervals<u128>,
}

#[derive(Debug, Clone)]
struct Intervals<T> {
    start: Vec<T>,
    end: Vec<T>,
    tenant: Vec<TenantIdx>,
}

impl<T> Default for Intervals<T> {
    fn default() -> Self {
        Intervals {
            start: Vec::new(),
            end: Vec::new(),
            tenant: Vec::new(),
        }
    }
}

impl<T: Copy + Ord> Intervals<T> {
    fn build(mut items: Vec<(T, T, TenantIdx)>) -> Self {
        items.sort_unstable_by_key(|&(s, _, _)| s);
        let mut out = Intervals {
            start: Vec::with_capacity(items.len()),
            end: Vec::with_capacity(items.len()),
            tenant: Vec::with_capacity(items.len()),
        };
        for (s, e, t) in items {
            out.start.push(s);
            out.end.push(e);
            out.tenant.push(t);
        }
        out
    }

    /// True when two intervals overlap (starts are sorted).
    fn overlapping(&self) -> bool {
        let mut widest: Option<T> = None;
        for (&s, &e) in self.start.iter().zip(&self.end) {
            if widest.is_some_and(|w| s <= w) {
                return true;
            }
            widest = Some(widest.map_or(e, |w| w.max(e)));
        }
        false
    }

    #[inline]
    fn find(&self, x: T) -> Option<usize> {
        // Index of the last interval starting at or before x.
        let i = self.start.partition_point(|&s| s <= x);
        if i == 0 {
            return None;
        }
        let i = i - 1;
        (x <= self.end[i]).then_some(i)
    }
}

fn v4_bounds(n: &Ipv4Net) -> (u32, u32) {
    (u32::from(n.network()), u32::from(n.broadcast()))
}

fn v6_bounds(n: &Ipv6Net) -> (u128, u128) {
    (u128::from(n.network()), u128::from(n.broadcast()))
}

fn v4_net(start: u32, end: u32) -> IpNet {
    let len = 32
        - (end - start)
            .checked_add(1)
            .map_or(32, |size| size.trailing_zeros());
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(start), len as u8).expect("prefix length <= 32"))
}

fn v6_net(start: u128, end: u128) -> IpNet {
    let len = 128
        - (end - start)
            .checked_add(1)
            .map_or(128, |size| size.trailing_zeros());
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(start), len as u8).expect("prefix length <= 128"))
}

impl RoutingTable {
    /// Builds the table from `(range, tenant)` pairs that do not overlap
    /// (see [`find_overlaps`]); with overlaps, lookups answer one of the
    /// overlapping ranges, not necessarily the longest.
    pub fn build(entries: &[(IpNet, TenantIdx)]) -> Self {
        RoutingTable::from_ranges(entries.iter().map(|(n, t)| (n, *t)))
    }

    /// Like [`RoutingTable::build`], from ranges as they come (e.g. each
    /// tenant's, with its index), without a copy of them all first.
    pub fn from_ranges<'a>(entries: impl Iterator<Item = (&'a IpNet, TenantIdx)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, t) in entries {
            match net.trunc() {
                IpNet::V4(n) => {
                    let (s, e) = v4_bounds(&n);
                    v4.push((s, e, t));
                }
                IpNet::V6(n) => {
                    let (s, e) = v6_bounds(&n);
                    v6.push((s, e, t));
                }
            }
        }
        RoutingTable {
            v4: Intervals::build(v4),
            v6: Intervals::build(v6),
        }
    }

    /// The tenant of a (canonicalised) address, if any.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<TenantIdx> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.find(u32::from(a)).map(|i| self.v4.tenant[i]),
            IpAddr::V6(a) => self.v6.find(u128::from(a)).map(|i| self.v6.tenant[i]),
        }
    }

    /// The tenant and the matching range of a (canonicalised) address.
    pub fn route(&self, ip: IpAddr) -> Option<Route> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.find(u32::from(a)).map(|i| Route {
                tenant: self.v4.tenant[i],
                range: v4_net(self.v4.start[i], self.v4.end[i]),
            }),
            IpAddr::V6(a) => self.v6.find(u128::from(a)).map(|i| Route {
                tenant: self.v6.tenant[i],
                range: v6_net(self.v6.start[i], self.v6.end[i]),
            }),
        }
    }

    /// True when two of the table's ranges overlap: [`find_overlaps`] names them.
    pub fn has_overlaps(&self) -> bool {
        self.v4.overlapping() || self.v6.overlapping()
    }

    /// Number of ranges in the table.
    pub fn len(&self) -> usize {
        self.v4.start.len() + self.v6.start.len()
    }

    /// True when no range is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The same lookup on a prefix trie (`prefix-trie`): the reference the
/// interval table is tested and benchmarked against.
#[derive(Default)]
pub struct TrieTable {
    v4: PrefixMap<Ipv4Net, TenantIdx>,
    v6: PrefixMap<Ipv6Net, TenantIdx>,
}

impl TrieTable {
    /// Builds the trie from `(range, tenant)` pairs.
    pub fn build(entries: &[(IpNet, TenantIdx)]) -> Self {
        let mut t = TrieTable::default();
        for (net, idx) in entries {
            match net.trunc() {
                IpNet::V4(n) => {
                    t.v4.insert(n, *idx);
                }
                IpNet::V6(n) => {
                    t.v6.insert(n, *idx);
                }
            }
        }
        t
    }

    /// Longest-prefix match of a (canonicalised) address.
    pub fn route(&self, ip: IpAddr) -> Option<Route> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(n, t)| Route {
                tenant: *t,
                range: IpNet::V4(n),
            }),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(n, t)| Route {
                tenant: *t,
                range: IpNet::V6(n),
            }),
        }
    }
}

/// Finds overlapping ranges: returns pairs of indices into `ranges`, the
/// earlier-starting (enclosing) range first. Runs in O(n log n).
pub fn find_overlaps(ranges: &[IpNet]) -> Vec<(usize, usize)> {
    let mut v4: Vec<(u32, u32, usize)> = Vec::new();
    let mut v6: Vec<(u128, u128, usize)> = Vec::new();
    for (i, net) in ranges.iter().enumerate() {
        match net.trunc() {
            IpNet::V4(n) => {
                let (s, e) = v4_bounds(&n);
                v4.push((s, e, i));
            }
            IpNet::V6(n) => {
                let (s, e) = v6_bounds(&n);
                v6.push((s, e, i));
            }
        }
    }
    let mut out = sweep(v4);
    out.extend(sweep(v6));
    out
}

fn sweep<T: Copy + Ord>(mut items: Vec<(T, T, usize)>) -> Vec<(usize, usize)> {
    // Sort by start, then widest first, so an enclosing range precedes what it contains.
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = Vec::new();
    let mut widest: Option<(T, usize)> = None; // greatest end so far, and its range
    for (s, e, i) in items {
        if let Some((end, j)) = widest {
            if s <= end {
                out.push((j, i));
                if e > end {
                    widest = Some((e, i));
                }
                continue;
            }
        }
        widest = Some((e, i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_and_v4_mapped_addresses_route() {
        let entries = vec![
            (net("10.1.0.0/16"), 0),
            (net("10.2.0.0/16"), 1),
            (net("2001:db8:1::/48"), 0),
        ];
        let t = RoutingTable::build(&entries);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("::ffff:10.2.0.9".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("10.3.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("2001:db8:1:ffff::1".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("2001:db8:2::1".parse().unwrap()), None);
        let r = t.route("10.1.255.255".parse().unwrap()).unwrap();
        assert_eq!(r.range, net("10.1.0.0/16"));
        assert_eq!(t.route("0.0.0.0".parse().unwrap()), None);
    }

    #[test]
    fn whole_address_space_ranges_reconstruct() {
        let t = RoutingTable::build(&[(net("0.0.0.0/0"), 3), (net("::/0"), 4)]);
        assert_eq!(
            t.route("1.2.3.4".parse().unwrap()).unwrap().range,
            net("0.0.0.0/0")
        );
        assert_eq!(t.route("::1".parse().unwrap()).unwrap().range, net("::/0"));
    }

    #[test]
    fn overlaps_name_both_ranges() {
        let ranges = vec![
            net("10.1.0.0/16"),
            net("10.2.0.0/16"),
            net("10.1.5.0/24"),
            net("10.1.0.0/16"),
        ];
        let mut o = find_overlaps(&ranges);
        o.sort();
        assert_eq!(o.len(), 2);
        assert!(o.iter().all(|&(a, b)| a != b));
        assert!(o.iter().any(|&(a, b)| (a, b) == (0, 2) || (a, b) == (3, 2)));
        assert!(find_overlaps(&[net("10.0.0.0/24"), net("10.0.1.0/24")]).is_empty());
    }

    fn arb_v4_net() -> impl Strategy<Value = IpNet> {
        (any::<u32>(), 8u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
    }

    fn arb_v6_net() -> impl Strategy<Value = IpNet> {
        (any::<u128>(), 16u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
    }

    /// Drops every range that overlaps an earlier kept one, as config validation would refuse it.
    fn non_overlapping(nets: Vec<IpNet>) -> Vec<(IpNet, TenantIdx)> {
        let mut kept: Vec<IpNet> = Vec::new();
        for n in nets {
            if !kept.iter().any(|k| k.contains(&n) || n.contains(k)) {
                kept.push(n);
            }
        }
        kept.into_iter()
            .enumerate()
            .map(|(i, n)| (n, i as TenantIdx))
            .collect()
    }

    proptest! {
        #[test]
        fn interval_table_agrees_with_trie(
            nets in proptest::collection::vec(prop_oneof![arb_v4_net(), arb_v6_net()], 0..200),
            probes in proptest::collection::vec(any::<u128>(), 0..200),
        ) {
            let entries = non_overlapping(nets);
            let table = RoutingTable::build(&entries);
            let trie = TrieTable::build(&entries);
            prop_assert!(find_overlaps(&entries.iter().map(|e| e.0).collect::<Vec<_>>()).is_empty());
            // Probe random addresses and each range's first and last address.
            let mut addrs: Vec<IpAddr> = probes.iter().flat_map(|&p| {
                [IpAddr::V6(Ipv6Addr::from(p)), IpAddr::V4(Ipv4Addr::from(p as u32))]
            }).collect();
            for (n, _) in &entries {
                addrs.push(n.network());
                addrs.push(n.broadcast());
            }
            for a in addrs {
                prop_assert_eq!(table.route(a), trie.route(a), "address {}", a);
                prop_assert_eq!(table.lookup(a), trie.route(a).map(|r| r.tenant));
            }
        }

        #[test]
        fn overlap_detection_matches_pairwise_check(
            nets in proptest::collection::vec(arb_v4_net(), 0..40),
        ) {
            let any_pair = nets.iter().enumerate().any(|(i, a)| {
                nets.iter().skip(i + 1).any(|b| a.contains(b) || b.contains(a))
            });
            let found = find_overlaps(&nets);
            prop_assert_eq!(any_pair, !found.is_empty());
            let table = RoutingTable::from_ranges(nets.iter().map(|n| (n, 0)));
            prop_assert_eq!(any_pair, table.has_overlaps());
            for (a, b) in found {
                prop_assert!(nets[a].contains(&nets[b]) || nets[b].contains(&nets[a]));
            }
        }
    }
}
