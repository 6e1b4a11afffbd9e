//! Server profiles: per server (device, address, port, SNI), what its successful
//! handshakes showed it accepts. Bounded: at most [`MAX_SERVERS`] servers, least
//! recently used first out (each eviction counted), and at most
//! [`MAX_VALUES_PER_LIST`] values per list (values past it counted, not kept).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::event::HandshakeEvent;

/// Servers remembered at once.
pub const MAX_SERVERS: usize = 4096;

/// Values kept per list of a profile (versions, suites, groups chosen).
pub const MAX_VALUES_PER_LIST: usize = 16;

/// Names remembered per address, to say which names a server did answer.
pub const MAX_NAMES_PER_ADDRESS: usize = 4;

/// Bytes of an SNI kept in a profile's key (a DNS name has at most 253): a longer
/// one, which only a hostile client sends, is cut so that it cannot make a profile
/// large.
pub const MAX_NAME_BYTES: usize = 255;

/// One server as the profiles tell servers apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerKey {
    /// Interface (or capture file) the handshakes crossed.
    pub device: String,
    /// Server address.
    pub ip: IpAddr,
    /// Server port.
    pub port: u16,
    /// The name clients asked for (`None`: no SNI).
    pub sni: Option<String>,
}

impl ServerKey {
    /// The server a handshake record went to.
    pub fn of(record: &HandshakeEvent) -> Self {
        ServerKey {
            device: record.device.clone(),
            ip: record.server_ip,
            port: record.server_port,
            sni: record.sni.as_deref().map(cut_name),
        }
    }

    fn address(&self) -> AddressKey {
        AddressKey {
            device: self.device.clone(),
            ip: self.ip,
            port: self.port,
        }
    }
}

/// A server address regardless of name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AddressKey {
    device: String,
    ip: IpAddr,
    port: u16,
}

/// A list of distinct values, at most [`MAX_VALUES_PER_LIST`] of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueList {
    values: Vec<String>,
    /// Distinct values seen after the list was full (not kept).
    pub overflowed: u64,
}

impl ValueList {
    fn add(&mut self, value: &str) {
        if self.values.iter().any(|v| v == value) {
            return;
        }
        if self.values.len() < MAX_VALUES_PER_LIST {
            self.values.push(value.to_string());
        } else {
            self.overflowed += 1;
        }
    }

    /// The values, in the order first seen.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `value` is among them.
    pub fn contains(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// No value yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// What one server's handshakes showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerProfile {
    /// Successful handshakes seen.
    pub successes: u64,
    /// Versions it negotiated.
    pub versions: ValueList,
    /// Cipher suites it chose.
    pub ciphers: ValueList,
    /// Key exchange groups it chose.
    pub groups: ValueList,
    /// It asked for a client certificate in a handshake (seen in TLS 1.2 and older).
    pub requests_client_cert: bool,
}

/// Names an address answered, as far as remembered.
#[derive(Clone, Debug, Default)]
struct AddressNames {
    /// Profiles of this address (one per name) currently held.
    profiles: u32,
    /// Up to [`MAX_NAMES_PER_ADDRESS`] of their names (`None`: no SNI).
    examples: Vec<Option<String>>,
}

/// What the profiles know about the server of one handshake.
#[derive(Clone, Debug, Default)]
pub struct ServerView<'a> {
    /// The profile of this very server (address and name), if any.
    pub exact: Option<&'a ServerProfile>,
    /// Other names this address completed handshakes with (`None`: without SNI),
    /// at most [`MAX_NAMES_PER_ADDRESS`].
    pub other_names: Vec<Option<String>>,
    /// How many other names that is in all (may exceed `other_names`).
    pub other_name_count: u32,
}

/// The profiles, least recently used first out.
#[derive(Debug)]
pub struct ServerProfiles {
    capacity: usize,
    profiles: HashMap<ServerKey, (ServerProfile, u64)>,
    by_use: BTreeMap<u64, ServerKey>,
    names: HashMap<AddressKey, AddressNames>,
    clock: u64,
    evicted: u64,
}

impl Default for ServerProfiles {
    fn default() -> Self {
        Self::with_capacity(MAX_SERVERS)
    }
}

impl ServerProfiles {
    /// Profiles holding at most `capacity` servers (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        ServerProfiles {
            capacity: capacity.max(1),
            profiles: HashMap::new(),
            by_use: BTreeMap::new(),
            names: HashMap::new(),
            clock: 0,
            evicted: 0,
        }
    }

    /// Servers pushed out to stay within the bound, so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Servers held now.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// No server held.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Learns from one handshake: an established one shows what the server
    /// accepts; any one may show that it asks for client certificates.
    pub fn learn(&mut self, record: &HandshakeEvent, established: bool, asked_for_cert: bool) {
        if !established && !asked_for_cert {
            return;
        }
        let key = ServerKey::of(record);
        let profile = self.touch(key);
        profile.requests_client_cert |= asked_for_cert;
        if established {
            profile.successes += 1;
            if let Some(v) = &record.version {
                profile.versions.add(v);
            }
            if let Some(c) = &record.cipher {
                profile.ciphers.add(c);
            }
            if let Some(g) = &record.group {
                profile.groups.add(g);
            }
        }
    }

    /// What is known of the server of `record`.
    pub fn view(&self, record: &HandshakeEvent) -> ServerView<'_> {
        let key = ServerKey::of(record);
        let exact = self.profiles.get(&key).map(|(p, _)| p);
        let mut view = ServerView {
            exact,
            ..ServerView::default()
        };
        if let Some(names) = self.names.get(&key.address()) {
            view.other_names = names
                .examples
                .iter()
                .filter(|n| **n != key.sni)
                .cloned()
                .collect();
            view.other_name_count = names.profiles - u32::from(exact.is_some());
        }
        view
    }

    /// The profile of `key`, created (and the least recently used one evicted
    /// when full) if new; marked as used now.
    fn touch(&mut self, key: ServerKey) -> &mut ServerProfile {
        self.clock += 1;
        let now = self.clock;
        if let Some((_, used)) = self.profiles.get(&key) {
            self.by_use.remove(used);
        } else {
            if self.profiles.len() >= self.capacity {
                self.evict_oldest();
            }
            let names = self.names.entry(key.address()).or_default();
            names.profiles += 1;
            if names.examples.len() < MAX_NAMES_PER_ADDRESS {
                names.examples.push(key.sni.clone());
            }
        }
        self.by_use.insert(now, key.clone());
        let entry = self
            .profiles
            .entry(key)
            .or_insert_with(|| (ServerProfile::default(), now));
        entry.1 = now;
        &mut entry.0
    }

    fn evict_oldest(&mut self) {
        let Some((_, key)) = self.by_use.pop_first() else {
            return;
        };
        self.profiles.remove(&key);
        self.evicted += 1;
        let address = key.address();
        if let Some(names) = self.names.get_mut(&address) {
            names.profiles = names.profiles.saturating_sub(1);
            names.examples.retain(|n| *n != key.sni);
            if names.profiles == 0 {
                self.names.remove(&address);
            }
        }
    }
}

/// `name` cut to at most [`MAX_NAME_BYTES`], at a character boundary.
fn cut_name(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}
