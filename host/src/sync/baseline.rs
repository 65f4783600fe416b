//! The baseline: what the engine knows of every linked pair of records, as of
//! the last time both sides were known to agree (sync-rules §1.2).
//!
//! A side's field is *unchanged* when its canonical value equals the base, or
//! equals that side's alias: a value the side holds that we accepted as
//! equivalent (the app's read-back form of what we wrote, sync-rules W2; an empty
//! one-way source; a consent loosening we did not propagate, sync-rules K2).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::model::{Side, SidePair, Value, ValueHash};

/// One linked pair of records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Stable key: `<entity index>/<origin side>/<origin id>`.
    pub key: String,
    /// Index of the entity pair in the sync's `entities`.
    pub entity: usize,
    /// The record ids; `None` on a side while its create is pending.
    pub ids: SidePair<Option<String>>,
    /// Where the pair stands.
    pub state: LinkState,
    /// The base of every mapped field, by pair key.
    pub fields: BTreeMap<String, FieldBase>,
    /// The version token each side had when last synced.
    pub versions: SidePair<Option<String>>,
    /// The normalised e-mail when the link was made (audit only: links use ids).
    pub match_key: Option<String>,
    /// How the link was made.
    pub origin: LinkOrigin,
    /// Open `manual` conflicts, the loop detector's memory, the operator's requests.
    #[serde(default, skip_serializing_if = "Review::is_empty")]
    pub review: Review,
    /// Per side, what the sync itself last planned to write to the record, so that
    /// the change time its own writes give the record is not read as a user's edit
    /// (`most-recent`): a restart or a retry decides as the first attempt did.
    #[serde(default, skip_serializing_if = "no_touch")]
    pub touched: SidePair<Option<Touch>>,
}

fn no_touch(t: &SidePair<Option<Touch>>) -> bool {
    t.a.is_none() && t.b.is_none()
}

/// The sync's own write to one side's record, as planned (stored before it is sent).
///
/// Any write moves the app's change time, a list add included, and an interrupted
/// run's writes may land without their answer being recorded. While the record's
/// mapped values are still those read when the write was planned, or those the
/// sync's writes leave, nobody else edited it since: its change time for
/// `most-recent` is the one read then, [`Touch::before`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Touch {
    /// The record's change time (RFC 3339) when the write was planned.
    pub before: Option<String>,
    /// Digests of the side's mapped values that carry no edit since: as read when
    /// the write was planned, as the planned writes leave them, and as the app read
    /// them back after an acknowledged write.
    pub values: BTreeSet<String>,
}

impl Link {
    /// The id on one side, if known.
    pub fn id(&self, side: Side) -> Option<&str> {
        self.ids.get(side).as_deref()
    }
}

/// Where a linked pair stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Both records take part.
    Linked,
    /// The record of this side left its scope (list): not synced until it returns.
    Detached(Side),
    /// The record of this side was deleted by a user; its counterpart was kept.
    /// A later change of the counterpart re-creates it (modification beats deletion).
    Deleted(Side),
    /// The sync removed this side's record (deleted it or took it out of the
    /// list) on purpose, after an opt-out: never written or re-created again.
    Removed(Side),
    /// The loop detector stopped writing this pair (sync-rules W6): only consent
    /// tightening still flows, until the operator releases it
    /// (`tandem sync resolve NAME --release ID`). The reason is in
    /// [`Review::quarantine`].
    Quarantined,
}

/// How a link was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkOrigin {
    /// Matched by normalised e-mail.
    Email,
    /// The engine created the record on this side.
    Created(Side),
}

/// What a link carries besides its bases: the operator's business (open
/// `manual` conflicts, a quarantine) and the loop detector's memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Fields whose true conflict waits for the operator (`manual` policy), by
    /// pair key: both candidates as last read. Nothing is written to the field
    /// until `tandem sync resolve NAME --field F --take a|b ID`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub open: BTreeMap<String, OpenConflict>,
    /// Why the loop detector quarantined the link (state [`LinkState::Quarantined`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Recent acknowledged writes, oldest first (bounded: [`Review::MAX_WRITES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<WriteMark>,
    /// The operator acted on the link: the next run reads both records and
    /// plans it, whether or not they changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recheck: bool,
    /// When this side's record left its scope, the sync took the other side's
    /// record out of its list (`scope.on-leave = remove-from-list`): put it
    /// back when the record returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted: Option<Side>,
}

impl Review {
    /// Write marks kept per link: more than any `loops.max-writes` allowed.
    pub const MAX_WRITES: usize = 64;

    /// Whether there is nothing to keep.
    pub fn is_empty(&self) -> bool {
        *self == Review::default()
    }

    /// Remembers an acknowledged write, dropping the oldest beyond the bound.
    pub fn remember(&mut self, mark: WriteMark) {
        self.writes.push(mark);
        let extra = self.writes.len().saturating_sub(Self::MAX_WRITES);
        self.writes.drain(..extra);
    }
}

/// A true conflict left to the operator (`manual`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenConflict {
    /// Side A's value.
    pub a: Value,
    /// Side B's value.
    pub b: Value,
    /// The base both sides moved away from (`None` on a first sync).
    pub base: Option<Value>,
}

/// One acknowledged write to one side of a link, for the loop detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteMark {
    /// The run that planned it.
    pub run: u64,
    /// The side written.
    pub side: Side,
    /// The hash of each field's canonical value written, by pair key.
    pub fields: BTreeMap<String, String>,
}

/// The base of one mapped field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "FieldBaseRepr", into = "FieldBaseRepr")]
pub struct FieldBase {
    /// The canonical value both sides agreed on.
    pub value: Value,
    /// Its hash.
    pub hash: ValueHash,
    /// Per side, another value that counts as unchanged (see the module doc).
    /// `Some(Value::Null)` is an alias of its own: the side holds nothing (an
    /// empty read-only field), and that is no change.
    pub alias: SidePair<Option<Value>>,
    /// Per side, the hash of the canonical value we last wrote there.
    pub written: SidePair<Option<ValueHash>>,
    /// Per side, the value there was never seen: the sync created the record
    /// without writing this field (the field is read-only there, or the source
    /// was empty) and the app's answer did not show it. The first value read
    /// there becomes that side's alias instead of counting as a change, so an
    /// app default or an empty read-only field never overwrites the other side.
    pub unseen: SidePair<bool>,
}

/// [`FieldBase`] as stored. JSON writes an alias `Some(Value::Null)` as `null`, which
/// reads back as no alias at all: the side's empty value would then count as a change
/// on the next run (an empty read-only field emptying the other side). Empty aliases
/// are therefore stored as flags beside the others; stores written before read as
/// before.
#[derive(Serialize, Deserialize)]
struct FieldBaseRepr {
    value: Value,
    hash: ValueHash,
    #[serde(default)]
    alias: SidePair<Option<Value>>,
    #[serde(default, skip_serializing_if = "neither")]
    empty_alias: SidePair<bool>,
    #[serde(default)]
    written: SidePair<Option<ValueHash>>,
    #[serde(default, skip_serializing_if = "neither")]
    unseen: SidePair<bool>,
}

impl From<FieldBase> for FieldBaseRepr {
    fn from(f: FieldBase) -> Self {
        let empty = |a: &Option<Value>| a.as_ref() == Some(&Value::Null);
        let empty_alias = SidePair::new(empty(&f.alias.a), empty(&f.alias.b));
        let keep = |a: Option<Value>| a.filter(|v| *v != Value::Null);
        FieldBaseRepr {
            value: f.value,
            hash: f.hash,
            alias: SidePair::new(keep(f.alias.a), keep(f.alias.b)),
            empty_alias,
            written: f.written,
            unseen: f.unseen,
        }
    }
}

impl From<FieldBaseRepr> for FieldBase {
    fn from(r: FieldBaseRepr) -> Self {
        let alias = |a: Option<Value>, empty: bool| if empty { Some(Value::Null) } else { a };
        FieldBase {
            value: r.value,
            hash: r.hash,
            alias: SidePair::new(
                alias(r.alias.a, r.empty_alias.a),
                alias(r.alias.b, r.empty_alias.b),
            ),
            written: r.written,
            unseen: r.unseen,
        }
    }
}

impl FieldBase {
    /// A base both sides agree on, without aliases.
    pub fn new(value: Value) -> Self {
        FieldBase {
            hash: ValueHash::of(&value),
            value,
            alias: SidePair::default(),
            written: SidePair::default(),
            unseen: SidePair::default(),
        }
    }

    /// The same base with an alias on one side (the side's value is now known).
    pub fn with_alias(mut self, side: Side, v: Value) -> Self {
        *self.alias.get_mut(side) = if v == self.value { None } else { Some(v) };
        *self.unseen.get_mut(side) = false;
        self
    }

    /// The same base with one side's value not known yet.
    pub fn unseen_on(mut self, side: Side) -> Self {
        *self.alias.get_mut(side) = None;
        *self.unseen.get_mut(side) = true;
        self
    }

    /// Whether `v`, read from `side`, counts as unchanged (a side never seen
    /// counts as unchanged: see [`FieldBase::unseen`]).
    pub fn matches(&self, side: Side, v: &Value) -> bool {
        *self.unseen.get(side) || *v == self.value || self.alias.get(side).as_ref() == Some(v)
    }

    /// The base once the records read now are known: a side never seen takes
    /// its value as alias, and a record read without the field holds nothing
    /// there (an empty alias). Adopting at the first read, not at the first
    /// value, matters: a value a user puts there later is an edit. `None` when
    /// nothing was unseen (or its record is still not read).
    pub fn adopt(&self, vals: &SidePair<Option<Value>>, read: SidePair<bool>) -> Option<FieldBase> {
        let mut out: Option<FieldBase> = None;
        for side in [Side::A, Side::B] {
            if *self.unseen.get(side) && *read.get(side) {
                let v = vals.get(side).clone().unwrap_or(Value::Null);
                out = Some(out.unwrap_or_else(|| self.clone()).with_alias(side, v));
            }
        }
        out
    }
}

fn neither(p: &SidePair<bool>) -> bool {
    !p.a && !p.b
}

/// The links the planner needs, plus how many links each entity pair has in
/// total (the store may hand over only the links touching observed records).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    /// Links by key.
    pub links: BTreeMap<String, Link>,
    /// Number of links per entity pair index, all of them.
    pub counts: BTreeMap<usize, usize>,
    /// The operator's decisions about ambiguous matches (sync-rules I3).
    pub decisions: Decisions,
    /// Links deleted on both sides, kept until their tombstones expire.
    pub gone: BTreeSet<String>,
    /// The number the run being planned will have: the loop detector's clock
    /// (0 when unknown).
    pub run: u64,
}

/// An operator's decision about two records an ambiguous match named (sync-rules E6),
/// stored with the sync's state and given to the planner as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Link these two records (then merge their fields), whatever the e-mails say.
    Link,
    /// Never match these two records: not reported as ambiguous again.
    KeepApart,
}

/// Operator decisions by (entity pair index, A id, B id).
pub type Decisions = BTreeMap<(usize, String, String), Decision>;

impl Baseline {
    /// A complete baseline from every link.
    pub fn from_links(links: impl IntoIterator<Item = Link>) -> Self {
        let mut b = Baseline::default();
        for l in links {
            *b.counts.entry(l.entity).or_default() += 1;
            b.links.insert(l.key.clone(), l);
        }
        b
    }

    /// Total links of one entity pair.
    pub fn count(&self, entity: usize) -> usize {
        self.counts.get(&entity).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty alias (an empty read-only field) survives the store: lost, the side's
    /// empty value would count as a change and empty the other side on the next run.
    #[test]
    fn an_empty_alias_survives_the_store() {
        let fb = FieldBase::new(Value::Text("Acme".into()))
            .with_alias(Side::A, Value::Null)
            .with_alias(Side::B, Value::Text("ACME".into()));
        let json = serde_json::to_string(&fb).unwrap();
        let back: FieldBase = serde_json::from_str(&json).unwrap();
        assert_eq!(back, fb, "{json}");
        assert!(back.matches(Side::A, &Value::Null));
        assert!(!back.matches(Side::B, &Value::Null));
    }

    /// A base stored before empty aliases were kept reads as it did: no alias.
    #[test]
    fn a_base_stored_before_reads_as_before() {
        let h = "0123456789abcdef0123456789abcdef";
        let old = format!(
            r#"{{"value":"Acme","hash":"{h}","alias":{{"a":null,"b":"ACME"}},"written":{{"a":"{h}","b":null}}}}"#
        );
        let fb: FieldBase = serde_json::from_str(&old).unwrap();
        assert_eq!(
            fb.alias,
            SidePair::new(None, Some(Value::Text("ACME".into())))
        );
        assert!(!fb.matches(Side::A, &Value::Null));
        assert_eq!(fb.written.a.map(|w| w.to_string()).as_deref(), Some(h));
        // Written back byte for byte (`tandem state copy` compares rows by digest).
        assert_eq!(
            serde_json::to_string(&fb).unwrap(),
            format!(
                r#"{{"value":"Acme","hash":"{h}","alias":{{"a":null,"b":"ACME"}},"written":{{"a":"{h}","b":null}}}}"#
            )
        );
    }
}
