//! Reads the current layouts of `L4Event`, `EnrichedEvent` and `Verdict`
//! straight into their borrowed views, field by field in schema order, with
//! no field-name matching and no copies: the policy, aggregate and enrich
//! stages' hot path (measured in `bench/`: serde's generic path spent half
//! of the policy stage's time identifying fields and dispatching).
//!
//! The layouts are written out here by hand, so they are checked against
//! the schemas by tests: every view read here equals the owned record read
//! by the serde codec (`tests/contracts.rs`, property tests over every event
//! family), and each enum's symbol table below equals its `.avsc` symbols
//! (unit test). A message of an older version never comes here: the codec
//! reads those owned and upgrades them.

use crate::EventId;
use crate::ids::Ip;

use super::derived::{Mode, Outcome, PeerKind, Side};
use super::network::{
    Direction, DnsKind, Endpoint, EventHeaderView, FinalState, L4EventView, L4Kind, Protocol,
};
use super::runtime::RuntimeKind;
use super::views::{
    DnsEventView, EnrichedEventView, EventBodyView, Labels, PeerView, RuntimeEventView, SideView,
    VerdictView, WorkloadView,
};

/// Symbols of each enum, in schema order.
pub(crate) const L4_KINDS: [L4Kind; 4] = [
    L4Kind::NetworkConnect,
    L4Kind::NetworkAccept,
    L4Kind::NetworkListen,
    L4Kind::NetworkFlow,
];
pub(crate) const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];
pub(crate) const DIRECTIONS: [Direction; 3] =
    [Direction::Egress, Direction::Ingress, Direction::None];
pub(crate) const FINAL_STATES: [FinalState; 4] = [
    FinalState::Established,
    FinalState::Refused,
    FinalState::HalfClosed,
    FinalState::Stale,
];
pub(crate) const DNS_KINDS: [DnsKind; 3] = [
    DnsKind::DnsQuery,
    DnsKind::DnsLookup,
    DnsKind::DnsResolution,
];
pub(crate) const RUNTIME_KINDS: [RuntimeKind; 9] = [
    RuntimeKind::ProcessExec,
    RuntimeKind::ProcessExit,
    RuntimeKind::FileOpen,
    RuntimeKind::FileCreate,
    RuntimeKind::FileWrite,
    RuntimeKind::FileDelete,
    RuntimeKind::FileChmod,
    RuntimeKind::FileChown,
    RuntimeKind::FileRename,
];
pub(crate) const PEER_KINDS: [PeerKind; 6] = [
    PeerKind::Pod,
    PeerKind::Host,
    PeerKind::External,
    PeerKind::Unresolved,
    PeerKind::None,
    PeerKind::Service,
];
pub(crate) const MODES: [Mode; 3] = [Mode::Audit, Mode::Enforce, Mode::Other];
pub(crate) const OUTCOMES: [Outcome; 4] = [
    Outcome::Allowed,
    Outcome::Audited,
    Outcome::Blocked,
    Outcome::NotPrevented,
];
pub(crate) const SIDES: [Side; 2] = [Side::Egress, Side::Ingress];

type R<T> = Result<T, String>;

/// A cursor over one Avro datum.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    /// Fails when bytes are left after the datum.
    pub(crate) fn done(&self) -> R<()> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            left => Err(format!("{left} bytes after the end of the datum")),
        }
    }

    #[inline]
    fn long(&mut self) -> R<i64> {
        // Most numbers (lengths, indexes, small ids) are one byte.
        if let Some(&byte) = self.buf.get(self.at)
            && byte < 0x80
        {
            self.at += 1;
            return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
        }
        self.long_slow()
    }

    fn long_slow(&mut self) -> R<i64> {
        let mut n = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.at)
                .ok_or("the datum ends inside a number")?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    #[inline]
    fn int<T: TryFrom<i64>>(&mut self, what: &str) -> R<T> {
        let v = self.long()?;
        T::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
    }

    fn bytes(&mut self) -> R<&'a [u8]> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| format!("a length of {len} runs past the datum"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn str(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|e| format!("text is not UTF-8: {e}"))
    }

    fn fixed<const N: usize>(&mut self) -> R<[u8; N]> {
        let end = self.at + N;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or("the datum ends inside a fixed field")?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn symbol<T: Copy>(&mut self, table: &[T]) -> R<T> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| table.get(i).copied())
            .ok_or_else(|| format!("enum index {i} of {} symbols", table.len()))
    }

    /// A `["null", T]` union.
    #[inline]
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        match self.long()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            i => Err(format!("union index {i} of 2 branches")),
        }
    }

    /// The items of an array or map, `item` called for each.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?; // the block's size in bytes
            }
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }

    fn ip(&mut self) -> R<Ip> {
        let b = self.bytes()?;
        Ok(Ip(match b.len() {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(b).map_err(|e| e.to_string())?),
            16 => std::net::IpAddr::from(<[u8; 16]>::try_from(b).map_err(|e| e.to_string())?),
            n => return Err(format!("an address of {n} bytes")),
        }))
    }

    fn endpoint(&mut self) -> R<Endpoint> {
        Ok(Endpoint {
            ip: self.ip()?,
            port: self.int("port")?,
        })
    }

    fn header(&mut self) -> R<EventHeaderView<'a>> {
        Ok(EventHeaderView {
            id: EventId(self.fixed()?),
            timestamp_ns: self.long()?,
            node: self.str()?,
            sensor_id: self.str()?,
            node_ip: self.opt(Self::ip)?,
        })
    }

    pub(crate) fn l4(&mut self) -> R<L4EventView<'a>> {
        Ok(L4EventView {
            header: self.header()?,
            kind: self.symbol(&L4_KINDS)?,
            pid: self.int("pid")?,
            binary: self.str()?,
            container_id: self.opt(Self::str)?,
            src: self.endpoint()?,
            dst: self.endpoint()?,
            protocol: self.symbol(&PROTOCOLS)?,
            direction: self.symbol(&DIRECTIONS)?,
            duration_ns: self.opt(|r| r.int("duration_ns"))?,
            bytes_sent: self.opt(|r| r.int("bytes_sent"))?,
            bytes_received: self.opt(|r| r.int("bytes_received"))?,
            final_state: self.opt(|r| r.symbol(&FINAL_STATES))?,
            ppid: self.opt(|r| r.int("ppid"))?,
            euid: self.opt(|r| r.int("euid"))?,
            egid: self.opt(|r| r.int("egid"))?,
            binary_path: self.opt(Self::str)?,
            command_line: self.opt(Self::str)?,
            blocked_by: self.opt(Self::str)?,
        })
    }

    fn dns(&mut self) -> R<DnsEventView<'a>> {
        let header = self.header()?;
        let kind = self.symbol(&DNS_KINDS)?;
        let pid = self.int("pid")?;
        let binary = self.str()?;
        let container_id = self.opt(Self::str)?;
        let name = self.str()?;
        let query_type = self.str()?;
        let mut answers = Vec::new();
        self.blocks(|r| {
            answers.push(r.str()?);
            Ok(())
        })?;
        let view = DnsEventView {
            header,
            kind,
            pid,
            binary,
            container_id,
            name,
            query_type,
            answers,
            resolver: self.opt(Self::endpoint)?,
            response_code: self.opt(Self::str)?,
            client: self.opt(Self::endpoint)?,
        };
        self.opt(|r| r.fixed::<16>())?; // connection
        Ok(view)
    }

    fn runtime(&mut self) -> R<RuntimeEventView<'a>> {
        let header = self.header()?;
        let kind = self.symbol(&RUNTIME_KINDS)?;
        let pid = self.int("pid")?;
        let ppid = self.int("ppid")?;
        let uid = self.int("uid")?;
        self.long()?; // euid
        self.long()?; // egid
        let binary = self.str()?;
        let command_line = self.opt(Self::str)?;
        let container_id = self.opt(Self::str)?;
        let path = self.opt(Self::str)?;
        let old_path = self.opt(Self::str)?;
        self.opt(Self::long)?; // mode
        self.opt(Self::long)?; // owner_uid
        self.opt(Self::long)?; // owner_gid
        self.opt(|r| r.int::<i32>("exit_code"))?;
        Ok(RuntimeEventView {
            header,
            kind,
            pid,
            ppid,
            uid,
            binary,
            command_line,
            container_id,
            path,
            old_path,
            blocked_by: self.opt(Self::str)?,
        })
    }

    fn peer(&mut self) -> R<PeerView<'a>> {
        let kind = self.symbol(&PEER_KINDS)?;
        self.opt(Self::bytes)?; // pod_uid
        let pod = self.opt(Self::str)?;
        let namespace = self.opt(Self::str)?;
        self.opt(Self::bytes)?; // container
        let node = self.opt(Self::str)?;
        let mut labels = Vec::new();
        self.blocks(|r| {
            labels.push((r.str()?, r.str()?));
            Ok(())
        })?;
        let workload = self.opt(|r| {
            Ok(WorkloadView {
                kind: r.str()?,
                name: r.str()?,
            })
        })?;
        self.opt(Self::bytes)?; // image
        self.opt(Self::bytes)?; // image_digest
        Ok(PeerView {
            kind,
            pod,
            namespace,
            node,
            labels: Labels(labels),
            workload,
            dns_name: self.opt(Self::str)?,
        })
    }

    pub(crate) fn enriched(&mut self) -> R<EnrichedEventView<'a>> {
        let body = match self.long()? {
            0 => EventBodyView::L4(self.l4()?),
            1 => EventBodyView::Dns(self.dns()?),
            2 => EventBodyView::Runtime(self.runtime()?),
            i => return Err(format!("union index {i} of 3 event families")),
        };
        Ok(EnrichedEventView {
            body,
            src: self.peer()?,
            dst: self.peer()?,
        })
    }

    pub(crate) fn verdict(&mut self) -> R<VerdictView<'a>> {
        let event = self.enriched()?;
        let mode = self.symbol(&MODES)?;
        let policy = self.opt(Self::str)?;
        let rule = self.opt(Self::str)?;
        let signature_id = self.str()?;
        let severity = self.int("severity")?;
        let outcome = self.symbol(&OUTCOMES)?;
        let mut sides = Vec::new();
        self.blocks(|r| {
            sides.push(SideView {
                side: r.symbol(&SIDES)?,
                mode: r.symbol(&MODES)?,
                outcome: r.symbol(&OUTCOMES)?,
                policy: r.opt(Self::str)?,
                rule: r.opt(Self::str)?,
            });
            Ok(())
        })?;
        Ok(VerdictView {
            event,
            mode,
            policy,
            rule,
            signature_id,
            severity,
            outcome,
            sides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The symbols of the enum `name` in the current schemas.
    fn symbols(name: &str) -> Vec<String> {
        fn find(v: &serde_json::Value, name: &str) -> Option<Vec<String>> {
            match v {
                serde_json::Value::Object(o) => {
                    if o.get("type").and_then(|t| t.as_str()) == Some("enum")
                        && o.get("name").and_then(|n| n.as_str()) == Some(name)
                    {
                        let s = o.get("symbols")?.as_array()?;
                        return Some(
                            s.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect(),
                        );
                    }
                    o.values().find_map(|v| find(v, name))
                }
                serde_json::Value::Array(a) => a.iter().find_map(|v| find(v, name)),
                _ => None,
            }
        }
        let kinds = crate::registry::SchemaKind::ALL;
        kinds
            .iter()
            .find_map(|k| {
                let json: serde_json::Value =
                    serde_json::from_str(&crate::registry().current(*k).json).ok()?;
                find(&json, name)
            })
            .unwrap_or_else(|| panic!("no enum {name} in the schemas"))
    }

    fn names<T: serde::Serialize>(table: &[T]) -> Vec<String> {
        table
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .ok()
                    .and_then(|j| j.as_str().map(str::to_owned))
                    .expect("a unit variant")
            })
            .collect()
    }

    #[test]
    fn symbol_tables_follow_the_schemas() {
        assert_eq!(names(&L4_KINDS), symbols("L4Kind"));
        assert_eq!(names(&PROTOCOLS), symbols("Protocol"));
        assert_eq!(names(&DIRECTIONS), symbols("Direction"));
        assert_eq!(names(&FINAL_STATES), symbols("FinalState"));
        assert_eq!(names(&DNS_KINDS), symbols("DnsKind"));
        assert_eq!(names(&RUNTIME_KINDS), symbols("RuntimeKind"));
        assert_eq!(names(&PEER_KINDS), symbols("PeerKind"));
        assert_eq!(names(&MODES), symbols("Mode"));
        assert_eq!(names(&OUTCOMES), symbols("Outcome"));
        assert_eq!(names(&SIDES), symbols("Side"));
    }

    #[test]
    fn truncated_and_corrupt_data_are_errors() {
        assert!(Reader::new(&[0x80]).long().is_err(), "ends inside a number");
        assert!(Reader::new(&[0xff; 11]).long().is_err(), "too long");
        assert!(Reader::new(&[0x03]).bytes().is_err(), "negative length");
        assert!(Reader::new(&[0x0a, b'a']).bytes().is_err(), "past the end");
        assert!(Reader::new(&[0x04, 0xff, 0xfe]).str().is_err(), "not UTF-8");
        assert!(Reader::new(&[0x08]).symbol(&MODES).is_err(), "index 4 of 3");
        assert!(
            Reader::new(&[0x04]).opt(Reader::long).is_err(),
            "branch 2 of 2"
        );
        assert_eq!(Reader::new(&[0x01]).long(), Ok(-1));
        assert_eq!(Reader::new(&[0xfe, 0x01]).long(), Ok(127));
    }
}
