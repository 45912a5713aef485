//! The session's side of access control and per-connection limits: checks
//! CONNECT credentials, SEND/SUBSCRIBE permissions and the connection's
//! share of `limits.max_unacked_per_connection`, turning refusals into
//! [`StompError`]s and log lines (never with a password).

use super::{Session, StompError};
use crate::auth::{Credentials, Permission, Principal};
use crate::router::{AckMode, Address, DestinationKind};
use ferromq_protocol::stomp::Frame;
use std::sync::Arc;
use tracing::warn;

impl Session {
    /// Records the verified TLS client certificate's common name: a
    /// CONNECT without `login` then authenticates as that user.
    pub fn set_certificate_user(&mut self, common_name: Option<Arc<str>>) {
        self.certificate_user = common_name;
    }

    /// The authenticated user, once connected.
    pub fn user(&self) -> Option<&str> {
        self.principal.as_ref().map(|p| &*p.name)
    }

    /// Checks CONNECT's `login`/`passcode` (or the client certificate).
    /// Every failure gets the same message, whatever the reason, so a client
    /// cannot probe for user names; the log says why.
    pub(super) async fn authenticate(&self, frame: &Frame) -> Result<Principal, StompError> {
        let login = frame.get("login");
        let credentials = Credentials {
            login,
            passcode: frame.get("passcode"),
            certificate: self.certificate_user.as_deref(),
        };
        self.config
            .auth
            .authenticate(credentials)
            .await
            .map_err(|why| {
                warn!(
                    conn = self.id,
                    peer = %self.peer,
                    login = %login.unwrap_or("-"),
                    certificate = %self.certificate_user.as_deref().unwrap_or("-"),
                    reason = %why,
                    "authentication failed"
                );
                StompError::new("authentication failed")
            })
    }

    /// Checks `permission` on `address` (and `admin` when it would create
    /// the destination).
    pub(super) fn authorize(
        &self,
        address: &Address,
        permission: Permission,
    ) -> Result<(), StompError> {
        let Some(principal) = &self.principal else {
            // Unreachable: every frame but CONNECT needs a session.
            return Err(StompError::new("not connected"));
        };
        self.config
            .auth
            .authorize_client(
                &self.router,
                principal,
                self.id,
                &self.peer,
                permission,
                address,
            )
            .map_err(|denied| StompError::new(denied.to_string()))
    }

    /// The prefetch a new subscription gets and the share of
    /// `max_unacked` it holds. Client-ack subscriptions get at most what is
    /// left of the connection's budget, so the connection's unacknowledged
    /// deliveries can never exceed it; auto-ack deliveries are settled when
    /// written (bounded by `limits.outbound_buffer`) and take no share.
    pub(super) fn unacked_share(
        &self,
        ack: AckMode,
        prefetch: Option<usize>,
        kind: DestinationKind,
    ) -> Result<(Option<usize>, usize), StompError> {
        if ack == AckMode::Auto {
            return Ok((prefetch, 0));
        }
        let defaults = self.router.config();
        let wanted = prefetch.unwrap_or(match kind {
            DestinationKind::Queue => defaults.queue_prefetch,
            DestinationKind::Topic => defaults.topic_prefetch,
        });
        let max = self.config.max_unacked;
        let left = max.saturating_sub(self.unacked_budget);
        if left == 0 {
            warn!(conn = self.id, peer = %self.peer, limit = max, "unacked limit reached");
            return Err(StompError::new(format!(
                "limit of {max} unacknowledged messages per connection reached \
                 (limits.max_unacked_per_connection): the prefetch of this connection's \
                 client-ack subscriptions already adds up to it"
            ))
            .detail(format!(
                "limit of {max} unacknowledged messages per connection reached \
                 (limits.max_unacked_per_connection). Subscribe with a smaller \
                 activemq.prefetchSize, or unsubscribe first."
            )));
        }
        let share = wanted.max(1).min(left);
        Ok((Some(share), share))
    }
}
