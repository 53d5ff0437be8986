//! The two correctness checks, run in-process on each library and store:
//!
//! - **Concurrent writes**: one session; 20 requests at once, each loads the session, waits
//!   (`SLOW`) and sets its own key `k0`..`k19`. How many keys are there afterwards?
//! - **Logout during a write**: one session; a request loads it and waits before writing, and
//!   meanwhile another request logs out. Does the old cookie lead to a session with data again?

use std::time::Duration;

use crate::apps::{SLOW, Subject};
use crate::load::{Jar, Target, logged_in};
use crate::model::Correctness;

pub async fn check(subject: &Subject) -> Correctness {
    let target = Target::InProcess(subject.router.clone());
    Correctness {
        keys_kept: concurrent_writes(&target).await,
        resurrected: logout_during_write(&target).await,
    }
}

async fn concurrent_writes(target: &Target) -> Result<u32, String> {
    let jar = logged_in(target).await?;
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let target = target.clone();
            let jar = jar.clone();
            tokio::spawn(async move {
                let reply = target.get(&format!("/slow/k{i}"), jar.header()).await?;
                if reply.status.is_success() {
                    Ok(())
                } else {
                    Err(format!("/slow/k{i} answered {}", reply.status))
                }
            })
        })
        .collect();
    for write in writes {
        write.await.map_err(|e| e.to_string())??;
    }
    Ok(probe(target, &jar).await?.0)
}

async fn logout_during_write(target: &Target) -> Result<bool, String> {
    let jar = logged_in(target).await?;
    let write = {
        let target = target.clone();
        let jar = jar.clone();
        tokio::spawn(async move { target.get("/slow/x", jar.header()).await })
    };
    // The write has loaded the session and is waiting; log out now.
    tokio::time::sleep(SLOW / 4).await;
    let logout = target.get("/logout", jar.header()).await?;
    if !logout.status.is_success() {
        return Err(format!("/logout answered {}", logout.status));
    }
    // The write finishes (it may fail: its session is gone).
    let _ = write.await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The old cookie, as a second tab or a stolen copy would still send it.
    Ok(probe(target, &jar).await?.1)
}

/// `(keys k0..k19 present, any key present)` for the session behind `jar`.
async fn probe(target: &Target, jar: &Jar) -> Result<(u32, bool), String> {
    let reply = target.get("/probe", jar.header()).await?;
    if !reply.status.is_success() {
        return Err(format!("/probe answered {}", reply.status));
    }
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    let (kept, any) = body
        .split_once(';')
        .ok_or_else(|| format!("/probe answered {body:?}"))?;
    Ok((
        kept.parse()
            .map_err(|_| format!("/probe answered {body:?}"))?,
        any == "true",
    ))
}
