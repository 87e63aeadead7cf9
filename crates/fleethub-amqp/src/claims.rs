//! The grants a connection holds: from SASL PLAIN and from each `$cbs` put-token. A link is
//! opened only under a grant that covers its address, and is closed when the last grant
//! covering it expires without renewal (see `docs/protocol-notes.md`, "AMQP claims-based
//! security").

use fleethub_services::{Clock, ServiceGrant};
use std::sync::Mutex;

/// Grants of one connection, newest last; a renewal for the same resource replaces the old one.
#[derive(Default)]
pub struct Claims {
    grants: Mutex<Vec<ServiceGrant>>,
    /// Wakes links when a grant is added (a renewal moves their deadline).
    renewed: tokio::sync::Notify,
}

/// Most grants one connection keeps (a client renewing for ever more audiences).
const MAX_GRANTS: usize = 64;

impl Claims {
    fn grants(&self) -> std::sync::MutexGuard<'_, Vec<ServiceGrant>> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds (or renews) a grant.
    pub fn add(&self, grant: ServiceGrant) {
        let mut g = self.grants();
        g.retain(|old| old.resource != grant.resource);
        if g.len() >= MAX_GRANTS {
            g.remove(0);
        }
        g.push(grant);
        drop(g);
        self.renewed.notify_waiters();
    }

    /// The latest expiry (unix seconds) among unexpired grants covering `resource`; `None`
    /// when nothing covers it.
    pub fn expiry_for(&self, resource: &str, now_unix: u64) -> Option<u64> {
        self.grants()
            .iter()
            .filter(|g| g.expires_unix > now_unix && g.covers(resource))
            .map(|g| g.expires_unix)
            .max()
    }

    /// Waits until no grant covers `resource` any more (expired, not renewed).
    pub async fn wait_expired(&self, resource: &str, clock: &Clock) {
        loop {
            let renewed = self.renewed.notified();
            let Some(exp) = self.expiry_for(resource, clock.unix()) else {
                return;
            };
            let wait = exp.saturating_sub(clock.unix()).max(1);
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(wait)) => {}
                () = renewed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(resource: &str, exp: u64) -> ServiceGrant {
        ServiceGrant {
            policy: "service".into(),
            resource: resource.into(),
            expires_unix: exp,
        }
    }

    #[test]
    fn covering_and_renewal() {
        let c = Claims::default();
        assert_eq!(
            c.expiry_for("h/hub/ConsumerGroups/$Default/Partitions/0", 100),
            None
        );
        c.add(grant("h/hub", 200));
        assert_eq!(
            c.expiry_for("h/hub/ConsumerGroups/$Default/Partitions/0", 100),
            Some(200)
        );
        assert_eq!(c.expiry_for("h/hub", 200), None, "expired at its expiry");
        assert_eq!(c.expiry_for("h/messages/devicebound", 100), None);
        c.add(grant("h/hub", 300));
        assert_eq!(c.expiry_for("h/hub", 250), Some(300));
        c.add(grant("h", 150));
        assert_eq!(c.expiry_for("h/messages/devicebound", 100), Some(150));
        assert_eq!(c.expiry_for("h/hub/x", 100), Some(300));
    }

    #[tokio::test(start_paused = true)]
    async fn links_wake_when_their_grant_expires() {
        let clock = Clock::system();
        let c = std::sync::Arc::new(Claims::default());
        c.add(grant("h/hub", clock.unix() + 3600));
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_expired("h/hub/x", &Clock::system()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // Replacing the grant with an expired one ends the wait.
        c.add(grant("h/hub", 1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
