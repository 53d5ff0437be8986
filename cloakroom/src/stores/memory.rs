//! An in-process store: for tests and single-process apps.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use async_trait::async_trait;
use parking_lot::RwLock;
use serde_json::Value;

use crate::error::StoreError;
use crate::record::{Data, Patch, Record};
use crate::store::{Percentiles, Store, StoreStats};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

const SHARDS: usize = 64;
/// Default bound on the number of stored sessions.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

type Sessions = HashMap<SessionHash, CompactRecord, BuildHasherDefault<PrefixHasher>>;
type UserIndex = HashMap<String, HashSet<SessionHash>>;

/// Keeps sessions in this process's memory; they are gone when it exits.
///
/// Lock-sharded (64 shards, each behind its own lock) so concurrent requests rarely wait for one
/// another, and bounded: when a shard is full, its expired sessions are dropped first, then the
/// one closest to expiry (logged as a warning, because it logs someone out).
///
/// ```
/// use cloakroom::MemoryStore;
///
/// let store = MemoryStore::with_capacity(10_000);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[RwLock<Sessions>]>,
    users: Box<[RwLock<UserIndex>]>,
    user_hasher: RandomState,
    shard_capacity: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    /// A store that holds at most about `capacity` sessions (rounded up to a multiple of 64).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            users: (0..SHARDS).map(|_| RwLock::default()).collect(),
            user_hasher: RandomState::new(),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard_index(hash: &SessionHash) -> usize {
        // Hashes are SHA-256 output: any byte is uniformly distributed. The map uses the first
        // eight, the shard choice the last.
        usize::from(hash.as_bytes()[31]) % SHARDS
    }

    fn shard(&self, hash: &SessionHash) -> &RwLock<Sessions> {
        &self.shards[Self::shard_index(hash)]
    }

    fn user_shard(&self, user_id: &str) -> &RwLock<UserIndex> {
        let index = self.user_hasher.hash_one(user_id) as usize % SHARDS;
        &self.users[index]
    }

    fn index(&self, user_id: Option<&str>, hash: SessionHash) {
        if let Some(user_id) = user_id {
            self.user_shard(user_id)
                .write()
                .entry(user_id.to_owned())
                .or_default()
                .insert(hash);
        }
    }

    fn unindex(&self, user_id: Option<&str>, hash: &SessionHash) {
        if let Some(user_id) = user_id {
            let mut users = self.user_shard(user_id).write();
            if let Some(set) = users.get_mut(user_id) {
                set.remove(hash);
                if set.is_empty() {
                    users.remove(user_id);
                }
            }
        }
    }

    /// Makes room in a full shard; returns the records dropped (to unindex them).
    fn evict(&self, sessions: &mut Sessions, now: Timestamp) -> Vec<(SessionHash, CompactRecord)> {
        let expired: Vec<SessionHash> = sessions
            .iter()
            .filter(|(_, r)| !r.is_live(now))
            .map(|(h, _)| *h)
            .collect();
        let mut dropped: Vec<_> = expired
            .iter()
            .filter_map(|h| sessions.remove_entry(h))
            .collect();
        if sessions.len() >= self.shard_capacity
            && let Some(soonest) = sessions
                .iter()
                .min_by_key(|(_, r)| r.expires_at)
                .map(|(h, _)| *h)
            && let Some(entry) = sessions.remove_entry(&soonest)
        {
            tracing::warn!(
                session = %soonest.short(),
                "cloakroom: memory store full; dropped the live session closest to expiry \
                 (raise MemoryStore::with_capacity)"
            );
            dropped.push(entry);
        }
        dropped
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let now = record.created_at;
        let mut dropped = Vec::new();
        {
            let mut sessions = self.shard(hash).write();
            if sessions.get(hash).is_some_and(|r| r.is_live(now)) {
                return Err(StoreError::Collision);
            }
            if sessions.len() >= self.shard_capacity {
                dropped = self.evict(&mut sessions, now);
            }
            if let Some(old) = sessions.insert(*hash, CompactRecord::new(record)) {
                dropped.push((*hash, old));
            }
        }
        for (old_hash, old) in &dropped {
            self.unindex(old.user(), old_hash);
        }
        self.index(record.user_id.as_deref(), *hash);
        Ok(())
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        Ok(self
            .shard(hash)
            .read()
            .get(hash)
            .filter(|r| r.is_live(now))
            .map(CompactRecord::record))
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let user_change = {
            let mut sessions = self.shard(hash).write();
            let Some(record) = sessions
                .get_mut(hash)
                .filter(|r| r.is_live(patch.updated_at))
            else {
                return Ok(false);
            };
            // Only a patch that binds or unbinds a user can move the session between indexes.
            let old_user = patch
                .user_id
                .is_some()
                .then(|| record.user().map(str::to_owned));
            record.apply(patch);
            old_user
                .filter(|old| old.as_deref() != record.user())
                .map(|old| (old, record.user().map(str::to_owned)))
        };
        if let Some((old, new)) = user_change {
            self.unindex(old.as_deref(), hash);
            self.index(new.as_deref(), *hash);
        }
        Ok(true)
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let (a, b) = (Self::shard_index(old), Self::shard_index(new));
        // Both shards are held for the move, always locked in index order.
        let (old_user, new_user, replaced) = {
            let mut first = self.shards[a.min(b)].write();
            let mut second = (a != b).then(|| self.shards[a.max(b)].write());
            let (from, to) = match second.as_mut() {
                None => (&mut *first, None),
                Some(second) if a < b => (&mut *first, Some(&mut **second)),
                Some(second) => (&mut **second, Some(&mut *first)),
            };
            if !from.get(old).is_some_and(|r| r.is_live(patch.updated_at)) {
                return Ok(false);
            }
            // Overwriting a live record would hand its owner's session to whoever rotates here.
            let taken = |map: &Sessions| map.get(new).is_some_and(|r| r.is_live(patch.updated_at));
            if old != new && taken(to.as_deref().unwrap_or(&*from)) {
                return Err(StoreError::Collision);
            }
            let Some(mut record) = from.remove(old) else {
                return Ok(false);
            };
            let old_user = record.user().map(str::to_owned);
            record.apply(patch);
            let new_user = record.user().map(str::to_owned);
            let replaced = to.unwrap_or(from).insert(*new, record);
            (old_user, new_user, replaced)
        };
        // An expired record at the new hash is replaced; its user must not keep listing it.
        if let Some(replaced) = &replaced {
            self.unindex(replaced.user(), new);
        }
        self.unindex(old_user.as_deref(), old);
        self.index(new_user.as_deref(), *new);
        Ok(true)
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        let removed = self.shard(hash).write().remove(hash);
        match removed {
            Some(record) => {
                self.unindex(record.user(), hash);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let hashes: Vec<SessionHash> = self
            .user_shard(user_id)
            .read()
            .get(user_id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let mut found: Vec<_> = hashes
            .into_iter()
            .filter_map(|hash| {
                let sessions = self.shard(&hash).read();
                sessions
                    .get(&hash)
                    .filter(|r| r.is_live(now) && r.user() == Some(user_id))
                    .map(|r| (hash, r.record()))
            })
            .collect();
        found.sort_by_key(|(hash, r)| (r.created_at, *hash));
        Ok(found)
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        let hashes: Vec<SessionHash> = self
            .user_shard(user_id)
            .read()
            .get(user_id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let mut revoked = 0;
        for hash in hashes.iter().filter(|h| Some(*h) != except) {
            let mut sessions = self.shard(hash).write();
            if sessions
                .get(hash)
                .is_some_and(|r| r.user() == Some(user_id))
            {
                sessions.remove(hash);
                revoked += 1;
            }
            drop(sessions);
            self.unindex(Some(user_id), hash);
        }
        Ok(revoked)
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(self
            .shards
            .iter()
            .map(|shard| shard.read().values().filter(|r| r.is_live(now)).count() as u64)
            .sum())
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut purged = Vec::new();
        for shard in self.shards.iter() {
            if purged.len() >= limit {
                break;
            }
            let mut sessions = shard.write();
            let expired: Vec<SessionHash> = sessions
                .iter()
                .filter(|(_, r)| !r.is_live(now))
                .map(|(h, _)| *h)
                .take(limit - purged.len())
                .collect();
            purged.extend(expired.iter().filter_map(|h| sessions.remove_entry(h)));
        }
        for (hash, record) in &purged {
            self.unindex(record.user(), hash);
        }
        Ok(purged.len() as u64)
    }

    async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats::default();
        let mut sizes = Vec::new();
        let mut expired = 0;
        let mut per_user: std::collections::HashMap<String, u64> = HashMap::new();
        for shard in self.shards.iter() {
            for record in shard.read().values() {
                if !record.is_live(now) {
                    expired += 1;
                    continue;
                }
                stats.live += 1;
                stats.oldest = Some(
                    stats
                        .oldest
                        .map_or(record.created_at, |t| t.min(record.created_at)),
                );
                stats.newest = Some(
                    stats
                        .newest
                        .map_or(record.created_at, |t| t.max(record.created_at)),
                );
                let data = record.record().data;
                sizes.push(serde_json::to_vec(&data).map_or(0, |v| v.len() as u64));
                if let Some(user) = record.user() {
                    *per_user.entry(user.to_owned()).or_default() += 1;
                }
            }
        }
        stats.expired = Some(expired);
        stats.data_bytes = Percentiles::of(sizes);
        let mut users: Vec<(String, u64)> = per_user.into_iter().collect();
        users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        users.truncate(top_users);
        stats.top_users = users;
        Ok(stats)
    }
}

/// A session as this store keeps it.
///
/// The data is a slice sorted by key rather than a [`Record`]'s map: a `BTreeMap` allocates a
/// node with room for eleven entries even for one key, which is most of the memory a small
/// session takes (docs/performance.md has the measured bytes per session).
#[derive(Debug)]
struct CompactRecord {
    data: Box<[(Box<str>, Value)]>,
    user_id: Option<Box<str>>,
    created_at: Timestamp,
    updated_at: Timestamp,
    expires_at: Timestamp,
}

impl CompactRecord {
    fn new(record: &Record) -> Self {
        let data = record
            .data
            .iter()
            .map(|(key, value)| (Box::from(key.as_str()), value.clone()));
        Self::with_data(data.collect(), record)
    }

    fn with_data(mut data: Vec<(Box<str>, Value)>, record: &Record) -> Self {
        // Already sorted unless serde_json's `preserve_order` is on somewhere in the build.
        data.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Self {
            data: data.into_boxed_slice(),
            user_id: record.user_id.as_deref().map(Box::from),
            created_at: record.created_at,
            updated_at: record.updated_at,
            expires_at: record.expires_at,
        }
    }

    fn record(&self) -> Record {
        // Inserting one by one: collecting would first gather and sort the pairs in a vector,
        // which measurably slowed every load.
        let mut data = Data::new();
        for (key, value) in &self.data {
            data.insert(String::from(&**key), value.clone());
        }
        Record {
            data,
            user_id: self.user().map(str::to_owned),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        }
    }

    fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    fn user(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.data.binary_search_by(|(k, _)| (**k).cmp(key)).ok()
    }

    /// Applies `patch`. The common write, new values for keys the session already has, happens
    /// in place; anything else goes through [`Patch::apply_to`] on a record.
    fn apply(&mut self, patch: &Patch) {
        let in_place = !patch.clear
            && patch.remove.is_empty()
            && patch
                .set
                .iter()
                .all(|(key, _)| self.position(key).is_some());
        if !in_place {
            let mut record = self.record();
            patch.apply_to(&mut record);
            *self = Self::from(record);
            return;
        }
        for (key, value) in &patch.set {
            if let Some(i) = self.position(key) {
                self.data[i].1.clone_from(value);
            }
        }
        if let Some(user_id) = &patch.user_id {
            self.user_id = user_id.as_deref().map(Box::from);
        }
        if let Some(expires_at) = patch.expires_at {
            self.expires_at = expires_at;
        }
        self.updated_at = patch.updated_at;
    }
}

impl From<Record> for CompactRecord {
    fn from(mut record: Record) -> Self {
        let data = std::mem::take(&mut record.data)
            .into_iter()
            .map(|(key, value)| (key.into_boxed_str(), value));
        Self::with_data(data.collect(), &record)
    }
}

/// Session hashes are already uniformly random, so the map can use their first bytes as the hash
/// instead of running SipHash over all 32.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, byte) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*byte) << (8 * i);
        }
    }
}
