//! SIGHUP: applies the parts of a re-read configuration that can change
//! while running — the TLS certificate files and the users/ACL — without
//! touching open connections. Everything else needs a restart.

use crate::auth::{AccessPolicy, AuthLoadError, Authenticator};
use crate::tls::{self, ReloadableAcceptor, TlsError};
use ferromq_config::Config;
use thiserror::Error;
use tracing::{info, warn};

/// Why a reload was (partly) refused; what failed keeps its old value.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The users or ACL could not be loaded: the old ones stay in force.
    #[error("users/ACL not reloaded, keeping the previous ones: {0}")]
    Auth(#[from] AuthLoadError),
    /// The certificate files are unusable: the old certificate stays.
    #[error("TLS certificates not reloaded, keeping the previous ones: {0}")]
    Tls(#[from] TlsError),
}

/// Applies `config`. The users/ACL and the certificates are each replaced
/// only if they load completely; the first error is returned after both
/// were tried.
pub fn apply(
    config: &Config,
    auth: &Authenticator,
    acceptor: Option<&ReloadableAcceptor>,
) -> Result<(), ReloadError> {
    let users = AccessPolicy::load(config).map(|policy| {
        info!(
            users = policy.user_count(),
            anonymous = policy.anonymous(),
            acl_rules = !policy.acl().is_empty(),
            "users and ACL reloaded"
        );
        auth.replace(policy);
    });
    let certificates = match (acceptor, tls::acceptor(&config.tls)) {
        (Some(current), Ok(Some(new))) => {
            current.replace(new);
            info!("TLS certificates reloaded; new connections use them");
            Ok(())
        }
        (Some(_), Ok(None)) => {
            warn!("tls.cert/tls.key removed: the TLS listeners keep the old certificate until restarted");
            Ok(())
        }
        (None, Ok(Some(_))) => {
            warn!("TLS configured but no TLS listener is running: restart to start it");
            Ok(())
        }
        (None, Ok(None)) => Ok(()),
        (_, Err(e)) => Err(e),
    };
    users?;
    certificates?;
    Ok(())
}
