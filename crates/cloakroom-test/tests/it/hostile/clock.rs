//! An application clock that jumps: NTP corrections, a VM resumed after days, a clock set to
//! 1970 or to the far future.
//!
//! Expected outcomes: no panic and no overflow; a session never lives past its absolute deadline
//! as the application's clock measures it, and once over it stays over, whatever the clock does
//! next. (The idle timeout is measured by Redis's own clock on Redis, and by the application's
//! clock on the memory store.)

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use cloakroom_core::{ManualClock, SessionConfig, SessionManager};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{login, request};

use super::SECRET;

cloakroom_test::test_over_memory_and_redis!(
    a_clock_jumping_back_an_hour,
    a_clock_jumping_past_the_deadline_and_back,
    a_clock_set_before_1970,
    a_clock_set_to_the_far_future,
);

fn clocked(f: &StoreFixture, start: SystemTime) -> anyhow::Result<(SessionManager, ManualClock)> {
    let clock = ManualClock::new(start);
    let config = SessionConfig::new(SECRET)?.with_clock(Arc::new(clock.clone()));
    Ok((SessionManager::new(f.store.clone(), config)?, clock))
}

async fn a_clock_jumping_back_an_hour(f: StoreFixture) -> anyhow::Result<()> {
    let (m, clock) = clocked(&f, SystemTime::now())?;
    let cookie = login(&m, "ann").await?;
    clock.advance(Duration::from_secs(600));
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(1));
    clock.set(SystemTime::now() - Duration::from_secs(3600));
    // Still the same session, and counting.
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(2));
    Ok(())
}

async fn a_clock_jumping_past_the_deadline_and_back(f: StoreFixture) -> anyhow::Result<()> {
    let start = SystemTime::now();
    let (m, clock) = clocked(&f, start)?;
    let cookie = login(&m, "ann").await?;
    // 25 hours in one jump: past the 24-hour absolute lifetime.
    clock.advance(Duration::from_secs(25 * 3600));
    ensure!(!request(&m, &cookie).exists().await?);
    clock.set(start);
    ensure!(
        !request(&m, &cookie).exists().await?,
        "the clock going back revived the session"
    );
    Ok(())
}

async fn a_clock_set_before_1970(f: StoreFixture) -> anyhow::Result<()> {
    // Times before the epoch read as the epoch: sessions work, and end when the real date
    // returns, because their deadline was set in 1970.
    let (m, clock) = clocked(&f, UNIX_EPOCH - Duration::from_secs(86_400))?;
    let cookie = login(&m, "ann").await?;
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(1));
    clock.set(SystemTime::now());
    ensure!(
        !request(&m, &cookie).exists().await?,
        "a 1970 session lived on"
    );
    Ok(())
}

async fn a_clock_set_to_the_far_future(f: StoreFixture) -> anyhow::Result<()> {
    // Near the end of what the arithmetic holds: deadlines saturate instead of wrapping round
    // to the past, and the idle timeout still bounds the session.
    let far = UNIX_EPOCH + Duration::from_millis(u64::MAX - 1000);
    let (m, clock) = clocked(&f, far)?;
    let cookie = login(&m, "ann").await?;
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(1));
    clock.set(SystemTime::now());
    // Back to now: the deadline is in the far future, and the idle timeout has not run out
    // (on Redis by the server's clock; on the memory store the last access is, by the
    // application's clock, still to come), so the session goes on in both.
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(2));
    Ok(())
}
