//! Password hashing: Argon2id PHC strings (`$argon2id$v=19$m=…`), made by
//! `ferromq passwd` and checked at CONNECT and by the admin endpoint.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use password_hash::rand_core::OsRng;

/// Hashes `password` with Argon2id (the crate's recommended parameters:
/// 19 MiB, 2 passes) and a random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Checks that `phc` is a PHC string argon2 can verify against; `Err` says
/// what is wrong (never the hash itself).
pub fn check_format(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a valid PHC string: {e}"))?;
    if argon2::Algorithm::try_from(parsed.algorithm).is_err() {
        return Err(format!(
            "algorithm `{}` is not argon2d, argon2i or argon2id",
            parsed.algorithm.as_str()
        ));
    }
    // The parser is lenient: a string missing its salt or hash, or with
    // unusable parameters, would only fail at the first login.
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("lacks the salt or the hash: copy the whole output of `ferromq passwd`".into());
    }
    argon2::Params::try_from(&parsed)
        .map_err(|e| format!("has unusable argon2 parameters: {e}"))?;
    Ok(())
}

/// Whether `password` matches the PHC string `phc`. Costs one full Argon2
/// computation with the hash's own parameters; a malformed hash never
/// matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(check_format(&phc).is_ok());
        assert!(verify("s3cret", &phc));
        assert!(!verify("s3cret ", &phc));
        // Salted: the same password hashes differently.
        assert_ne!(phc, hash("s3cret").unwrap());
    }

    #[test]
    fn malformed_hashes_are_reported_and_never_match() {
        assert!(check_format("$argon2id$nonsense").is_err());
        assert!(check_format("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ").is_err());
        assert!(check_format("$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").is_err());
        assert!(check_format("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(!verify("x", "$argon2id$nonsense"));
    }
}
