//! Where the services are, unique names for this run, and cleaning up what the run made.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::Library;

/// How long connecting to or cleaning a service may take before it counts as down.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Service URLs and this run's unique names.
#[derive(Clone, Debug)]
pub struct Env {
    pub postgres_url: String,
    pub mysql_url: String,
    pub redis_url: String,
    /// Unique per run: table names and key prefixes start with `cb_{run}_`.
    pub run: String,
    /// SQLite files of this run live here; removed at the end.
    pub dir: PathBuf,
}

impl Env {
    pub fn from_environment() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let run = format!("{:x}{:05x}", std::process::id() & 0xffff, nanos & 0xfffff);
        let dir = std::env::temp_dir().join(format!("cloakroom-bench-{run}"));
        Self {
            postgres_url: var(
                "CLOAKROOM_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            mysql_url: var("CLOAKROOM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
            redis_url: var("CLOAKROOM_REDIS_URL", "redis://127.0.0.1:6379"),
            run,
            dir,
        }
    }

    /// A table name (or key prefix) unique to this run, library, store and purpose.
    pub fn name(&self, library: Library, purpose: &str) -> String {
        format!("cb_{}_{}{}", self.run, library.tag(), purpose)
    }

    /// A SQLite file for this run.
    pub fn sqlite_path(&self, library: Library, purpose: &str) -> PathBuf {
        self.dir.join(format!(
            "{}{}.db",
            library.tag(),
            purpose.trim_start_matches('_')
        ))
    }

    /// The database name in the MySQL URL (tower-sessions' MySQL store needs it as its schema).
    pub fn mysql_database(&self) -> String {
        let path = self.mysql_url.rsplit('/').next().unwrap_or("test");
        path.split('?').next().unwrap_or("test").to_owned()
    }
}

/// Something the run made that must go when it ends.
#[derive(Clone, Debug)]
pub enum Leftover {
    PostgresTable(String),
    MySqlTable(String),
    /// Redis keys starting with this prefix.
    RedisPrefix(String),
    /// Redis keys by name.
    RedisKeys(Vec<String>),
}

/// Removes `leftovers`; returns what could not be removed, as messages.
pub async fn clean(env: &Env, leftovers: Vec<Leftover>) -> Vec<String> {
    let mut problems = Vec::new();
    for leftover in leftovers {
        let result = tokio::time::timeout(SERVICE_TIMEOUT * 60, clean_one(env, &leftover))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        if let Err(e) = result {
            problems.push(format!("{leftover:?}: {e}"));
        }
    }
    if env.dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&env.dir)
    {
        problems.push(format!("{}: {e}", env.dir.display()));
    }
    problems
}

async fn clean_one(env: &Env, leftover: &Leftover) -> Result<(), String> {
    use sqlx::Connection as _;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match leftover {
        Leftover::PostgresTable(table) => {
            let mut conn = sqlx::PgConnection::connect(&env.postgres_url)
                .await
                .map_err(|e| err(&e))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS \"{table}\""
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| err(&e))?;
        }
        Leftover::MySqlTable(table) => {
            let mut conn = sqlx::MySqlConnection::connect(&env.mysql_url)
                .await
                .map_err(|e| err(&e))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS `{table}`"
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| err(&e))?;
        }
        Leftover::RedisPrefix(prefix) => {
            // SCAN in batches rather than KEYS: a full run leaves a few hundred thousand keys.
            let mut conn = crate::serverstats::redis_connection(&env.redis_url).await?;
            let pattern = format!("{prefix}*");
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(5000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| err(&e))?;
                if !keys.is_empty() {
                    let _: () = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| err(&e))?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Leftover::RedisKeys(keys) => {
            let mut conn = crate::serverstats::redis_connection(&env.redis_url).await?;
            for chunk in keys.chunks(1000) {
                let _: () = redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| err(&e))?;
            }
        }
    }
    Ok(())
}
