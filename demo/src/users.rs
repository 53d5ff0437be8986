//! The app's users: an in-memory table with argon2 password hashes.
//!
//! Users live in the process, not in the session store: two demo users are created on start and
//! registration adds more (they are gone after a restart). Sessions refer to users by id only, so
//! the table stays the one place that says who is an administrator.

use std::collections::{BTreeMap, HashMap};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use parking_lot::RwLock;
use serde::Serialize;

use crate::error::Error;

/// A user's id, also what sessions are bound to (`session.set_user(id.to_string())`).
pub type UserId = u64;

/// Seeded ids are small; registered users get random ids from here up, so an id is never reused
/// after a restart (a session of a vanished user cannot turn into someone else's).
const FIRST_RANDOM_ID: u64 = 1_000;
/// JavaScript's largest exact integer, so ids survive `JSON.parse`.
const MAX_ID: u64 = (1 << 53) - 1;
/// Longer passwords are refused before hashing.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Shorter passwords are refused at registration.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// One user, as pages and the API show it (the password hash is never serialized).
#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub is_admin: bool,
    #[serde(skip)]
    password_hash: String,
}

/// What registration collects before the password.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<String>,
}

/// How expensive password hashing is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PasswordCost {
    /// argon2id with OWASP's recommended parameters (19 MiB, 2 passes).
    #[default]
    Standard,
    /// Minimal parameters: for tests only, where hashing must not dominate the run time.
    Fast,
}

/// The user table.
pub struct Users {
    table: RwLock<Table>,
    hasher: Hasher,
    /// Verified against when the e-mail is unknown, so both failures take the same time.
    dummy_hash: String,
}

#[derive(Default)]
struct Table {
    by_id: BTreeMap<UserId, User>,
    by_email: HashMap<String, UserId>,
}

impl Users {
    /// An empty table.
    pub fn new(cost: PasswordCost) -> Result<Self, Error> {
        let hasher = Hasher::new(cost)?;
        let dummy_hash = hasher.hash("not anyone's password")?;
        Ok(Self {
            table: RwLock::default(),
            hasher,
            dummy_hash,
        })
    }

    /// The table with the two demo users: alice (admin) and bob.
    pub fn with_demo_users(cost: PasswordCost) -> Result<Self, Error> {
        let users = Self::new(cost)?;
        for (id, name, email, password, is_admin) in [
            (1, "Alice", "alice@example.com", "wonderland", true),
            (2, "Bob", "bob@example.com", "builder", false),
        ] {
            let user = User {
                id,
                name: name.into(),
                email: email.into(),
                phone: None,
                address: None,
                is_admin,
                password_hash: users.hasher.hash(password)?,
            };
            users.table.write().insert(user);
        }
        Ok(users)
    }

    /// The user with this id.
    pub fn get(&self, id: UserId) -> Option<User> {
        self.table.read().by_id.get(&id).cloned()
    }

    /// Whether an account uses this e-mail address (compared case-insensitively).
    pub fn email_taken(&self, email: &str) -> bool {
        self.table
            .read()
            .by_email
            .contains_key(&normalize_email(email))
    }

    /// Every user, by id.
    pub fn all(&self) -> Vec<User> {
        self.table.read().by_id.values().cloned().collect()
    }

    /// The user with this e-mail and password. Takes as long for an unknown address as for a
    /// wrong password, and runs the hashing off the async threads.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<Option<User>, Error> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Ok(None);
        }
        let user = {
            let table = self.table.read();
            table
                .by_email
                .get(&normalize_email(email))
                .and_then(|id| table.by_id.get(id))
                .cloned()
        };
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let ok = blocking(move || Ok(hasher.verify(&password, &hash))).await?;
        Ok(user.filter(|_| ok))
    }

    /// Creates an account. Fails with [`Error::Conflict`] when the e-mail is taken.
    pub async fn register(&self, new: NewUser, password: &str) -> Result<User, Error> {
        check_password(password)?;
        if self.email_taken(&new.email) {
            return Err(email_taken(&new.email));
        }
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        let password_hash = blocking(move || hasher.hash(&password)).await?;
        let mut table = self.table.write();
        // Checked again under the lock: someone may have taken it while we were hashing.
        if table.by_email.contains_key(&normalize_email(&new.email)) {
            return Err(email_taken(&new.email));
        }
        let id = loop {
            let id = random_id()?;
            if !table.by_id.contains_key(&id) {
                break id;
            }
        };
        let user = User {
            id,
            name: new.name,
            email: new.email,
            phone: new.phone,
            address: new.address,
            is_admin: false,
            password_hash,
        };
        table.insert(user.clone());
        Ok(user)
    }
}

impl Table {
    fn insert(&mut self, user: User) {
        self.by_email.insert(normalize_email(&user.email), user.id);
        self.by_id.insert(user.id, user);
    }
}

/// Refuses passwords too short to be worth anything, or too long to hash cheaply.
pub fn check_password(password: &str) -> Result<(), Error> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::BadRequest(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Error::BadRequest(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

fn email_taken(email: &str) -> Error {
    Error::Conflict(format!("an account with the e-mail {email} already exists"))
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn random_id() -> Result<UserId, Error> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(FIRST_RANDOM_ID + u64::from_le_bytes(bytes) % (MAX_ID - FIRST_RANDOM_ID))
}

/// Runs CPU-heavy work (argon2) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))?
}

#[derive(Clone)]
struct Hasher(Argon2<'static>);

impl Hasher {
    fn new(cost: PasswordCost) -> Result<Self, Error> {
        let params = match cost {
            PasswordCost::Standard => Params::default(),
            PasswordCost::Fast => Params::new(Params::MIN_M_COST, Params::MIN_T_COST, 1, None)
                .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?,
        };
        Ok(Self(Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            params,
        )))
    }

    fn hash(&self, password: &str) -> Result<String, Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
        self.0
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(format!("password hashing: {e}")))
    }

    /// Checks against the parameters stored in the hash, whatever this hasher's are.
    fn verify(&self, password: &str, hash: &str) -> bool {
        PasswordHash::new(hash)
            .and_then(|hash| self.0.verify_password(password.as_bytes(), &hash))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_users_log_in_with_their_passwords_only() {
        let users = Users::with_demo_users(PasswordCost::Fast).unwrap();
        let alice = users
            .authenticate("Alice@Example.com ", "wonderland")
            .await
            .unwrap()
            .unwrap();
        assert!(alice.is_admin);
        assert!(!alice.password_hash.contains("wonderland"));
        assert!(alice.password_hash.starts_with("$argon2id$"));
        let bob = users.authenticate("bob@example.com", "builder").await;
        assert!(!bob.unwrap().unwrap().is_admin);
        for (email, password) in [
            ("bob@example.com", "wonderland"),
            ("nobody@example.com", "builder"),
            ("bob@example.com", ""),
        ] {
            assert!(users.authenticate(email, password).await.unwrap().is_none());
        }
        let huge = "x".repeat(MAX_PASSWORD_CHARS + 1);
        assert!(
            users
                .authenticate("bob@example.com", &huge)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn registration_refuses_taken_emails_and_weak_passwords() {
        let users = Users::with_demo_users(PasswordCost::Fast).unwrap();
        let new = |email: &str| NewUser {
            name: "Carol".into(),
            email: email.into(),
            phone: None,
            address: None,
        };
        let err = users
            .register(new("BOB@example.com"), "long enough")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let err = users.register(new("carol@example.com"), "short").await;
        assert!(matches!(err, Err(Error::BadRequest(_))));
        let carol = users
            .register(new("carol@example.com"), "long enough")
            .await
            .unwrap();
        assert!(carol.id >= FIRST_RANDOM_ID && carol.id <= MAX_ID);
        assert!(!carol.is_admin);
        assert_eq!(users.get(carol.id).unwrap().email, "carol@example.com");
        let found = users.authenticate("carol@example.com", "long enough").await;
        assert_eq!(found.unwrap().unwrap().id, carol.id);
    }
}
